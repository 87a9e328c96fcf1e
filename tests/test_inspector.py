"""The INT8-kernel check of `rrl-edge device-check` (rrl_edge.export.device_check.int8_kernels): engine inspector
JSON in, which quantized convolutions run an INT8 kernel out. Pure parsing: it runs everywhere.

The sample JSON follows what TensorRT emits, with this project's node names put in:
- the layer record (Name, LayerType, Inputs[].Format/Datatype, ParameterType, Origin, TacticValue) and the
  fused names "<weights> + <weight Q node> + <conv>" and "a + b || c + d", from a TensorRT 8.x trtexec
  --verbose run on a Q/DQ ONNX ("Engine Layer Information" / "Layers"; a Chinese blog post analysing a Q/DQ
  ONNX built with trtexec, 2024), where the input Q node is its own layer: LayerType "Reformat", Origin "QDQ";
- "Row major Int8 format", "Thirty-two wide channel vectorized row major Int8 format", "Row major linear FP32":
  the same log, TensorRT's Developer Guide (Engine Inspector, kDETAILED example) and TREx's format table
  (NVIDIA/TensorRT tools/experimental/trt-engine-explorer/trex/activations.py);
- "Reformatting CopyNode for Input Tensor 1 to <layer>", "PWN(PWN(a), PWN(b))", "{ForeignNode[a...b]}" and the
  Myelin kernels "__myl_..." / "<name with _>_myl109_2": a TensorRT 10 inspector table of a YOLO engine;
  "[DlaLayer] {ForeignNode[conv1_1...pool5]}": trtexec on a Jetson DLA;
- names-only reports (ProfilingVerbosity.LAYER_NAMES_ONLY): "Layers" is a list of strings (Developer Guide,
  Engine Inspector: "only the layer names will be printed"; TREx parser.py refuses them for that reason);
- TensorRT 11 splits "Format/Datatype" into "Format" and "DataType" (TensorRT 10.x to 11.x migration guide,
  IEngineInspector JSON Output; its I/O Tensors example: "DataType": "Float", "Format": "Row major linear FP32
  format (kLINEAR)").
"""

import pytest

from rrl_edge.export.device_check import format_report, int8_kernels, names_node

INT8_IN = [{"Name": "t", "Location": "Device", "Dimensions": [32, 16, 64, 64],
            "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}]
FP32_IN = [{"Name": "t", "Location": "Device", "Dimensions": [32, 16, 64, 64], "Format/Datatype": "Row major linear FP32"}]
FP16_IN = [{"Name": "t", "Location": "Device", "Dimensions": [32, 16, 64, 64],
            "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]


def _conv(name, inputs, layer_type="CaskConvolution"):
    return {"Name": name, "LayerType": layer_type, "Inputs": inputs,
            "Outputs": [{"Name": "o", "Location": "Device", "Dimensions": [32, 16, 64, 64],
                         "Format/Datatype": "Row major Int8 format"}],
            "ParameterType": "Convolution", "TacticValue": "0x9ae0c0d2fb3a01e5"}


def _engine(*layers):
    return {"Layers": list(layers), "Bindings": ["vis", "other", "score"]}


@pytest.mark.parametrize("layer,node,expected", [
    ("/vis/Conv", "/vis/Conv", True),
    ("/vis/Conv_1", "/vis/Conv", False),  # a longer name is another node
    ("/x/vis/Conv", "/vis/Conv", False),  # so is a longer path
    ("model.vis.conv.weight + /vis/conv/_weight_quantizer/QuantizeLinear + /vis/Conv", "/vis/Conv", True),
    ("/vis/Conv + /vis/act/LeakyRelu", "/vis/act/LeakyRelu", True),
    ("/a/Conv + /a/Relu || /vis/Conv + /vis/Relu", "/vis/Conv", True),
    ("PWN(PWN(/vis/act/Sigmoid), PWN(/vis/act/Mul))", "/vis/act/Sigmoid", True),
    ("{ForeignNode[/vis/Conv.../head/Add]}", "/vis/Conv", True),
    ("{ForeignNode[/stem/Conv.../vis/Conv]}", "/vis/Conv", True),
    ("{ForeignNode[/stem/Conv.../vis/Conv_1]}", "/vis/Conv", False),
    ("/vis/conv/_input_quantizer/QuantizeLinear", "/vis/Conv", False),
    ("/model_10/vis/b_0/Conv_myl109_2", "/model.10/vis/b.0/Conv", True),  # a kernel of an expanded Myelin region
    ("/model_10/vis/b_0/Conv_1_myl109_2", "/model.10/vis/b.0/Conv", False),
    ("/vis/Conv [profile 1]", "/vis/Conv", True),
])
def test_node_names_match_as_whole_names_only(layer, node, expected):
    assert names_node(layer, node) is expected


def test_conv_and_conv_1_are_told_apart():
    """'/vis/Conv' runs float while '/vis/Conv_1' runs INT8: a substring match would credit /vis/Conv with
    /vis/Conv_1's INT8 kernel."""
    info = _engine(
        {"Name": "/vis/conv/_input_quantizer/QuantizeLinear", "LayerType": "Reformat", "Inputs": FP32_IN,
         "Outputs": [{"Name": "q", "Format/Datatype": "Row major Int8 format"}], "ParameterType": "Reformat",
         "Origin": "QDQ", "TacticValue": "0x00000000000003ea"},
        _conv("model.vis.conv.weight + /vis/conv/_weight_quantizer/QuantizeLinear + /vis/Conv + /vis/act/LeakyRelu", FP16_IN),
        _conv("model.vis.conv_1.weight + /vis/conv_1/_weight_quantizer/QuantizeLinear + /vis/Conv_1", INT8_IN),
    )
    result = int8_kernels(info, ["/vis/Conv", "/vis/Conv_1"])
    assert result["checked"] and result["int8"] == 1 and result["not_int8"] == ["/vis/Conv"] and not result["passed"]


def test_a_reformat_into_the_conv_does_not_vouch_for_its_kernel():
    info = _engine(
        {"Name": "Reformatting CopyNode for Input Tensor 0 to /vis/Conv_2 + /vis/act_2/LeakyRelu", "LayerType": "Reformat",
         "Inputs": INT8_IN, "Outputs": FP32_IN, "ParameterType": "Reformat", "Origin": "REFORMAT"},
        _conv("/vis/Conv_2 + /vis/act_2/LeakyRelu", FP32_IN),
        _conv("/other/Conv", INT8_IN),
    )
    result = int8_kernels(info, ["/vis/Conv_2", "/other/Conv"])
    assert result["not_int8"] == ["/vis/Conv_2"] and result["int8"] == 1 and not result["passed"]


def test_every_quantized_conv_in_int8_passes():
    info = _engine(_conv("/vis/Conv + /vis/Relu", INT8_IN), _conv("w + /other/q/QuantizeLinear + /other/Conv", INT8_IN),
                   _conv("/head/Gemm", FP32_IN, "CaskGemmConvolution"))
    result = int8_kernels(info, ["/vis/Conv", "/other/Conv"])
    assert result == {"checked": True, "quantized_convs": 2, "int8": 2, "not_int8": [], "not_found": [],
                      "not_checked": [], "passed": True}


def test_a_names_only_report_is_not_checked():
    """An engine built without ProfilingVerbosity.DETAILED (or elsewhere, e.g. trtexec's default): names only.
    Not "every convolution is float"."""
    info = {"Layers": ["model.vis.conv.weight + /vis/conv/_weight_quantizer/QuantizeLinear + /vis/Conv",
                       "/other/Conv + /other/Relu"], "Bindings": ["vis", "other", "score"]}
    result = int8_kernels(info, ["/vis/Conv", "/other/Conv"])
    assert result["checked"] is False and "layer names only" in result["why"] and "DETAILED" in result["why"]
    no_inputs = _engine({"Name": "/vis/Conv", "LayerType": "CaskConvolution"})
    assert int8_kernels(no_inputs, ["/vis/Conv"])["checked"] is False


def test_no_inspector_is_not_checked_with_the_reason():
    result = int8_kernels(None, ["/vis/Conv"])
    assert result["checked"] is False and "create_engine_inspector" in result["why"]


def test_convolutions_inside_a_foreign_node_are_not_checked():
    """A Myelin (or DLA) region is one compiled unit named after its first and last node: the convolutions in
    it, named or not, have no kernel of their own to inspect. The region's input format says nothing about
    each convolution, so they are listed as not checked; the others are checked as usual."""
    info = _engine(
        _conv("/stem/Conv", INT8_IN),
        {"Name": "{ForeignNode[/vis/Conv_3.../head/Add]}", "LayerType": "Myelin", "Inputs": INT8_IN,
         "Outputs": FP32_IN, "TacticValue": "0x0000000000000000"},
    )
    result = int8_kernels(info, ["/stem/Conv", "/vis/Conv_3", "/vis/Conv_4"])  # Conv_4: inside the range, unnamed
    assert result["checked"] and result["int8"] == 1 and result["not_checked"] == ["/vis/Conv_3", "/vis/Conv_4"]
    assert result["passed"] and result["not_found"] == []
    only_region = _engine({"Name": "{ForeignNode[/vis/Conv.../head/Add]}", "LayerType": "Myelin", "Inputs": INT8_IN})
    result = int8_kernels(only_region, ["/vis/Conv", "/vis/Conv_1"])
    assert result["checked"] is False and result["not_checked"] == ["/vis/Conv", "/vis/Conv_1"]


def test_an_expanded_myelin_region_makes_unnamed_convs_not_checked_rather_than_missing():
    """TensorRT 10 lists a Myelin region's kernels (kgen, gemm, ...) instead of one ForeignNode layer; the
    region's name survives in its reformats."""
    info = _engine(
        _conv("/stem/Conv", INT8_IN),
        {"Name": "__myl_MulMaxSubExpSum_myl109_3", "LayerType": "kgen", "Inputs": FP16_IN},
        {"Name": "Reformatting CopyNode for Output Tensor 0 to {ForeignNode[/vis/Split_16.../vis/Add]}",
         "LayerType": "Reformat", "Inputs": FP16_IN},
    )
    result = int8_kernels(info, ["/stem/Conv", "/vis/attn/Conv"])
    assert result["not_checked"] == ["/vis/attn/Conv"] and result["passed"]


def test_a_conv_missing_from_an_engine_without_regions_fails():
    result = int8_kernels(_engine(_conv("/stem/Conv", INT8_IN)), ["/stem/Conv", "/vis/Conv"])
    assert result["checked"] and result["not_found"] == ["/vis/Conv"] and not result["passed"]


def test_tensorrt_11_split_format_and_datatype_fields():
    split_int8 = [{"Name": "t", "Dimensions": [32, 16, 64, 64], "Format": "Channel major format where channel % 32 == 0",
                   "DataType": "Int8"}]
    split_float = [{"Name": "t", "Dimensions": [32, 16, 64, 64], "Format": "Row major linear format (kLINEAR)",
                    "DataType": "Float"}]
    result = int8_kernels(_engine(_conv("/vis/Conv", split_int8), _conv("/vis/Conv_1", split_float)),
                          ["/vis/Conv", "/vis/Conv_1"])
    assert result["int8"] == 1 and result["not_int8"] == ["/vis/Conv_1"]


def test_unknown_formats_are_not_checked():
    dynamic = [{"Name": "t", "Dimensions": [-1, 16, 64, 64], "Format/Datatype": "N/A due to dynamic shapes"}]
    result = int8_kernels(_engine(_conv("/vis/Conv", dynamic), _conv("/vis/Conv_1", INT8_IN)), ["/vis/Conv", "/vis/Conv_1"])
    assert result["not_checked"] == ["/vis/Conv"] and result["int8"] == 1 and result["passed"]


def test_the_report_table_shows_dla_split_skips_and_unchecked_convs():
    parity = {"mean_fpr95": 1.0, "mean_fpr95_reference": 1.0, "logit_rms": 0.01, "agreement": 1.0}
    bench = {"p50_ms": 2.0, "pairs_per_s": 16000.0}
    report = {"backend": "tensorrt", "pairs": 1024, "budget": 0.3, "dla_core": 0, "passed": True,
              "skipped": {"fp32": "DLA core 0: the DLA runs FP16 and INT8 only"},
              "candidates": {
                  "fp16": {"parity": parity, "bench": bench, "passed": True,
                           "dla": {"core": 0, "dla_layers": 30, "gpu_fallback_layers": 1, "gpu_fallback_names": ["/s/Sigmoid"]}},
                  "int8": {"parity": parity, "bench": bench, "passed": True,
                           "int8_kernels": {"checked": True, "quantized_convs": 3, "int8": 1, "not_int8": [],
                                            "not_found": [], "not_checked": ["/a/Conv", "/b/Conv"], "passed": True},
                           "dla": {"core": 0, "dla_layers": 20, "gpu_fallback_layers": 0, "gpu_fallback_names": []}}}}
    text = format_report(report)
    assert "DLA core 0" in text.splitlines()[0] and "30/1" in text and "20/0" in text and "1/3" in text
    assert "on the GPU, not DLA core 0: /s/Sigmoid" in text and "fp32   skipped: DLA core 0" in text
    assert "INT8 kernels not checked: /a/Conv, /b/Conv" in text and text.endswith("PASSED")
