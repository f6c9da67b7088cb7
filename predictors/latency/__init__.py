"""Per-device latency lookup tables: build (measure units with ONNX Runtime), predict, validate."""
