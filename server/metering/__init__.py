"""Metering: one usage record per terminal prediction, shipped as objects to S3 or a directory."""
