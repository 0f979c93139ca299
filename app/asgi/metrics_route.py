"""GET /metrics: Prometheus text exposition. A router of its own so that access control can
be attached to it alone."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.observability.metrics import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (see docs/metrics.md)."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=registry.content_type)
