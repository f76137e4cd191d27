"""Files: the ``/v1/files`` API, the blob stores behind it, file inputs and file outputs."""
