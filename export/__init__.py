"""Export targets (`profiles`): which runtime each ONNX profile is for, mobile's static graph and its
checker, the 8-bit schemes."""
