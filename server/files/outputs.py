"""File outputs: every instance is started with ``--upload-url`` pointing at the gateway.

Cog then ``PUT``s each output file to ``<upload_url>/<name>`` (with ``X-Prediction-ID``) and puts
the URL our answer's ``Location`` names into the output, instead of inlining a ``data:`` URI.
The runtime seam is wrapped, so no runtime (local, Docker, fakes) needs to know about files.
"""

import dataclasses

from server.runtime.base import InstanceHandle, InstanceSpec, Runtime


class UploadingRuntime:
    """A ``Runtime`` that sets ``spec.upload_url`` (unless already set) and delegates."""

    def __init__(self, runtime: Runtime, upload_url: str) -> None:
        self.runtime = runtime
        self.upload_url = upload_url

    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        if spec.upload_url is None:
            spec = dataclasses.replace(spec, upload_url=self.upload_url)
        return await self.runtime.start(spec)

    async def stop(self, handle: InstanceHandle, *, grace: float) -> None:
        await self.runtime.stop(handle, grace=grace)

    async def aclose(self) -> None:
        await self.runtime.aclose()


def with_upload_url(runtime: Runtime, upload_url: str | None) -> Runtime:
    """``runtime`` itself when outputs stay ``data:`` URIs (``upload_url`` None)."""
    return runtime if upload_url is None else UploadingRuntime(runtime, upload_url)
