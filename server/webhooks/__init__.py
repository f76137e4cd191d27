"""Webhooks: per-account signing keys, the URL policy, and durable, signed delivery."""
