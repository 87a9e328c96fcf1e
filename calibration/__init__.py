"""INT8 calibration on cross-spectral patches."""
