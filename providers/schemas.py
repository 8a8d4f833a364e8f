"""Request schemas of the offers API. Responses are prebuilt bytes (see `providers.query`); their
shape is documented by the response schemas below for OpenAPI only, never validated per request.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from ninja import Field, Schema
from pydantic import field_validator, model_validator

from providers.query import CRITERIA, DEFAULT_LIMIT, MAX_LIMIT, SORTS, OfferQuery, parse_weights

AvailabilityName = Literal["available", "limited", "unavailable"]
SortName = Literal["price", "price_per_gpu", "performance", "value", "topsis"]
CriterionName = Literal["price", "price_per_gpu", "performance", "availability", "reliability", "memory"]
assert set(SortName.__args__) == set(SORTS) and set(CriterionName.__args__) == set(CRITERIA)  # type: ignore[attr-defined]

TEXT = 80  # longest filter value accepted (GPU, region and provider names are far shorter)


def _split(values: list[str]) -> list[str]:
    """Repeated parameters and comma-separated lists both work: ?gpu_type=a&gpu_type=b or a,b."""
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                if len(part) > TEXT:
                    raise ValueError(f"values are at most {TEXT} characters")
                out.append(part)
    if len(out) > 50:
        raise ValueError("at most 50 values")
    return out


class OfferFilters(Schema):
    gpu_type: list[str] = Field(default_factory=list, description='Canonical GPU types, e.g. "H100 80GB"')
    min_price: Decimal | None = Field(None, ge=0, le=100000, description="USD per hour, whole offer")
    max_price: Decimal | None = Field(None, ge=0, le=100000)
    region: list[str] = Field(default_factory=list)
    availability: list[AvailabilityName] = Field(default_factory=list)
    provider: list[str] = Field(default_factory=list, description="Provider slugs, e.g. aws, runpod")
    min_gpu_memory: int | None = Field(None, ge=1, le=10000, description="GB per GPU")
    gpu_count: int | None = Field(None, ge=1, le=1024)
    spot: bool | None = Field(None, description="true: only offers with a spot price; false: only without")
    compliance: list[str] = Field(default_factory=list, description="Tags every offer must carry")

    @field_validator("gpu_type", "region", "provider", "compliance", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        return _split(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value

    @field_validator("availability", mode="before")
    @classmethod
    def _availability_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        return _split(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value

    @model_validator(mode="after")
    def _price_range(self) -> OfferFilters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("max_price: must not be below min_price")
        return self

    def to_query(self, sort: str = "price", weights: tuple[tuple[str, float], ...] | None = None) -> OfferQuery:
        return OfferQuery(
            gpu_type=tuple(self.gpu_type), min_price=self.min_price, max_price=self.max_price,
            region=tuple(self.region), availability=tuple(self.availability), provider=tuple(self.provider),
            min_gpu_memory=self.min_gpu_memory, gpu_count=self.gpu_count, spot=self.spot,
            compliance=tuple(self.compliance), sort=sort, weights=weights or parse_weights(None),
        )


class ListParams(OfferFilters):
    sort: SortName = "price"
    weights: str | None = Field(None, max_length=300, description='TOPSIS weights, e.g. "price:0.6,performance:0.3,availability:0.1"')
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=600)

    def query(self) -> OfferQuery:
        return self.to_query(self.sort, parse_weights(self.weights))


class QueryBody(OfferFilters):
    sort: SortName = "price"
    weights: dict[CriterionName, float] | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=600)

    def query(self) -> OfferQuery:
        weights = None
        if self.weights is not None:
            weights = parse_weights(",".join(f"{k}:{v}" for k, v in self.weights.items()))
        return self.to_query(self.sort, weights)


class RankingParams(OfferFilters):
    weights: str | None = Field(None, max_length=300)
    top: int = Field(10, ge=1, le=MAX_LIMIT)


class Criterion(Schema):
    name: CriterionName
    weight: float = Field(1.0, ge=0, le=1000)
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default: minimize prices, maximize the rest")

    @property
    def benefit(self) -> bool:
        return CRITERIA[self.name][0] if self.direction is None else self.direction == "maximize"


class DecideBody(Schema):
    method: Literal["topsis", "weighted_sum", "pareto"] = "topsis"
    criteria: list[Criterion] = Field(..., min_length=1, max_length=len(CRITERIA))
    filters: OfferFilters = Field(default_factory=OfferFilters)
    top_k: int = Field(10, ge=1, le=MAX_LIMIT)

    @model_validator(mode="after")
    def _criteria(self) -> DecideBody:
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError("criteria: each criterion may appear once")
        if self.method != "pareto" and sum(c.weight for c in self.criteria) <= 0:
            raise ValueError("criteria: at least one criterion needs a weight above zero")
        return self


class HistoryParams(Schema):
    gpu_type: str | None = Field(None, max_length=TEXT)
    offer_id: int | None = Field(None, ge=1)
    since: datetime | None = None
    until: datetime | None = None
    resolution: Literal["minute", "change"] = Field("minute", description="minute: per-GPU-type aggregates; change: every recorded change of an offer")

    @model_validator(mode="after")
    def _one_subject(self) -> HistoryParams:
        if (self.gpu_type is None) == (self.offer_id is None):
            raise ValueError("gpu_type: give exactly one of gpu_type or offer_id")
        if self.resolution == "minute" and self.gpu_type is None:
            raise ValueError("resolution: minute aggregates are per gpu_type; use resolution=change for an offer")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("until: must be after since")
        return self


class OfferOut(Schema):
    id: int
    provider: str
    provider_name: str
    name: str
    gpu_type: str
    gpu_count: int
    gpu_memory_gb: int
    total_gpu_memory_gb: int
    vcpus: int | None
    ram_gb: float | None
    storage_gb: int | None
    price_per_hour: float
    price_per_gpu_hour: float
    spot_price: float | None
    currency: str
    availability_status: AvailabilityName
    region: str
    compliance_tags: list[str]
    source: str
    last_updated: datetime
    tflops: float | None
    reliability: float
    score: float | None = None
    rank: int | None = None


class OfferPage(Schema):
    items: list[OfferOut]
    next_cursor: str | None
    total: int
    stale_since: datetime | None


class ErrorItem(Schema):
    field: str
    reason: str


class ErrorOut(Schema):
    error: str
    errors: list[ErrorItem] = []

