"""One way to build a boto3 S3 client for any S3-compatible store (AWS, MinIO, R2, moto)."""

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def s3_client(
    *,
    endpoint_url: str | None,
    region: str,
    connect_timeout: float,
    read_timeout: float,
    attempts: int,
) -> Any:
    """``attempts`` counts the first try (botocore's ``total_max_attempts``)."""
    options: dict[str, Any] = {}
    if endpoint_url is not None:  # path-style and no streaming checksums: what others speak
        options = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        **options,
    )
    session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def create_bucket(client: Any, bucket: str) -> None:
    """Create ``bucket`` in the client's region; one that already exists (another gateway
    created it in between) is fine."""
    region = client.meta.region_name
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":  # us-east-1 rejects an explicit constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
