"""Scoring away from the service: batch files, the ONNX export and its serverless handler."""
