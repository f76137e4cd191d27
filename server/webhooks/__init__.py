"""Webhooks: signing keys per account and Standard Webhooks signatures (delivery comes next)."""
