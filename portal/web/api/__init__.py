"""The partner API under ``/v1`` (``views``) and its contract (``openapi.json``)."""
