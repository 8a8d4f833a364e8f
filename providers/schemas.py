"""Request schemas of the offers API. Responses are prebuilt bytes (see `providers.query`); their
shape is documented by the response schemas below for OpenAPI only, never validated per request.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, WithJsonSchema, field_validator, model_validator

from providers.query import CRITERIA, DEFAULT_LIMIT, MAX_LIMIT, SORTS, OfferQuery, parse_weights

AvailabilityName = Literal["available", "limited", "unavailable"]
SortName = Literal["price", "price_per_gpu", "performance", "value", "topsis"]
CriterionName = Literal["price", "price_per_gpu", "performance", "availability", "reliability", "memory"]
assert set(SortName.__args__) == set(SORTS) and set(CriterionName.__args__) == set(CRITERIA)  # type: ignore[attr-defined]

MAX_ID = 2**63 - 1  # ids are 64-bit signed in the database: anything larger names no offer
TEXT = 400  # longest filter value accepted (one name, or several separated by commas)
MAX_VALUES = 50
# Spaces trimmed around each comma-separated value: only these, so the OpenAPI pattern (ECMA
# regex) and the server (Python) agree on what "blank" means.
BLANK = " \t\n\r\f\v"
# One filter value: names separated by commas, each with something besides blanks; no NUL
# (PostgreSQL text cannot hold it). The same expression is the schema's pattern and the check.
_PART = "[^,\\x00]*[^,\\x00 \\t\\n\\r\\f\\v][^,\\x00]*"
FILTER_PATTERN = f"^{_PART}(,{_PART})*$"
_FILTER = re.compile(FILTER_PATTERN)
# RFC 3339 date-time, as OpenAPI's `date-time` format means it: seconds and an offset required.
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
_DATETIME = re.compile(DATETIME_PATTERN)


def text_problem(value: str) -> str | None:
    """Why a text value cannot go to the database, or None: the one check every text input shares
    (API filters, JSON bodies, the browse form, history)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (an unpaired surrogate was sent)"
    return None


def _split(values: list[str]) -> list[str]:
    """Repeated parameters and comma-separated lists both work: ?gpu_type=a&gpu_type=b or a,b."""
    if len(values) > MAX_VALUES:
        raise ValueError(f"at most {MAX_VALUES} values")
    out = []
    for value in values:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        if len(value) > TEXT:
            raise ValueError(f"values are at most {TEXT} characters")
        if not _FILTER.match(value):
            raise ValueError("empty value: give a name (or names separated by commas), or leave the parameter out")
        out += [part.strip(BLANK) for part in value.split(",")]
    return out


def _text_list(description: str = "") -> Any:
    item = {"type": "string", "minLength": 1, "maxLength": TEXT, "pattern": FILTER_PATTERN}
    extra = {"items": item, "maxItems": MAX_VALUES}
    return Field(default_factory=list, description=description, json_schema_extra=extra)  # type: ignore[arg-type]


# Decimals travel as JSON numbers (a query string spells them the same way).
Price = Annotated[Decimal, WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100000})]


class Request(BaseModel):
    """A request schema: plain pydantic, so only a mapping validates (ninja's Schema would read
    attributes off anything, and take a list or a string for an object)."""

    model_config = ConfigDict(extra="ignore")


class JsonBody(Request):
    """A JSON body's values must have their documented JSON types: "5" is not a number, nor
    "true" a boolean (a query string is text, so only bodies are held to this)."""

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("request: expected a JSON object")
        for name, value in data.items():
            kind = _JSON_KINDS.get((cls, name)) if name in cls.model_fields else None
            if kind and value is not None and not _is_kind(value, kind):
                raise ValueError(f"{name}: expected {'a JSON ' + kind if kind != 'array' else 'an array'}")
        return data


def _is_kind(value: object, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, list) if kind == "array" else isinstance(value, dict)


_JSON_KINDS: dict[tuple[type, str], str] = {}


def _record_json_kinds(model: type[BaseModel]) -> type[BaseModel]:
    """Remembers each field's JSON type from the model's own published schema."""
    schema = model.model_json_schema()
    for name, prop in schema.get("properties", {}).items():
        kinds = {p.get("type") for p in prop.get("anyOf", [prop])} - {None, "null"}
        if len(kinds) == 1 and "$ref" not in prop:
            _JSON_KINDS[(model, name)] = kinds.pop()
        elif "$ref" in prop or any("$ref" in p for p in prop.get("anyOf", [])):
            _JSON_KINDS[(model, name)] = "object"
    return model


class OfferFilters(Request):
    gpu_type: list[str] = _text_list('Canonical GPU types, e.g. "H100 80GB"; several separated by commas')
    min_price: Price | None = Field(None, ge=0, le=100000, description="USD per hour, whole offer")
    max_price: Price | None = Field(None, ge=0, le=100000)
    region: list[str] = _text_list()
    availability: list[AvailabilityName] = Field(default_factory=list, max_length=3)
    provider: list[str] = _text_list("Provider slugs, e.g. aws, runpod")
    min_gpu_memory: int | None = Field(None, ge=1, le=10000, description="GB per GPU")
    gpu_count: int | None = Field(None, ge=1, le=1024)
    spot: bool | None = Field(None, description="true: only offers with a spot price; false: only without")
    compliance: list[str] = _text_list("Tags every offer must carry")

    @field_validator("gpu_type", "region", "provider", "compliance", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value

    def to_query(self, sort: str = "price", weights: tuple[tuple[str, float], ...] | None = None) -> OfferQuery:
        return OfferQuery(
            gpu_type=tuple(self.gpu_type), min_price=self.min_price, max_price=self.max_price,
            region=tuple(self.region), availability=tuple(self.availability), provider=tuple(self.provider),
            min_gpu_memory=self.min_gpu_memory, gpu_count=self.gpu_count, spot=self.spot,
            compliance=tuple(self.compliance), sort=sort, weights=weights or parse_weights(None),
        )


# A cursor is the API's own: its pattern in the schema, a 404 when it names no page of these results.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,600}$"
CURSOR = Field(None, max_length=600, pattern=CURSOR_PATTERN, description="next_cursor of the previous page")
# "name:weight" pairs, each weight a plain decimal from 0 to 1000, at least one above zero.
_NAME = "(?:" + "|".join(CRITERIA) + ")"
_WEIGHT = r"(?:1000(?:\.0{1,6})?|[1-9][0-9]{0,2}(?:\.[0-9]{1,6})?|0(?:\.[0-9]{1,6})?)"
_POSITIVE = r"(?:1000(?:\.0{1,6})?|[1-9][0-9]{0,2}(?:\.[0-9]{1,6})?|0\.0{0,5}[1-9][0-9]{0,5})"
WEIGHTS_PATTERN = rf"^(?:{_NAME}:{_WEIGHT},)*{_NAME}:{_POSITIVE}(?:,{_NAME}:{_WEIGHT})*$"
_WEIGHTS = re.compile(WEIGHTS_PATTERN)
WEIGHTS = Field(None, max_length=300, json_schema_extra={"pattern": WEIGHTS_PATTERN},
                description='TOPSIS weights, each 0-1000, at least one above zero, e.g. "price:0.6,performance:0.3,availability:0.1"')


def _check_weights(value: str | None) -> str | None:
    if value is not None:
        parse_weights(value or ",")  # the clear reason, if there is one
        if not _WEIGHTS.match(value):
            raise ValueError("weights: write each weight as a plain decimal from 0 to 1000 (at most 6 decimals), e.g. price:0.6")
    return value


class ListParams(OfferFilters):
    sort: SortName = "price"
    weights: str | None = WEIGHTS
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = CURSOR

    _weights = field_validator("weights")(classmethod(lambda cls, v: _check_weights(v)))

    def query(self) -> OfferQuery:
        return self.to_query(self.sort, parse_weights(self.weights))


class FilterBody(OfferFilters, JsonBody):
    pass


class QueryBody(FilterBody):
    sort: SortName = "price"
    weights: dict[CriterionName, Annotated[float, Field(ge=0, le=1000)]] | None = Field(
        None, description="each 0-1000; unless empty (the defaults), at least one above zero",
        json_schema_extra={"not": {"minProperties": 1, "additionalProperties": {"const": 0}}},
    )
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = CURSOR

    def query(self) -> OfferQuery:
        weights = None
        if self.weights is not None:
            weights = parse_weights(",".join(f"{k}:{v}" for k, v in self.weights.items()))
        return self.to_query(self.sort, weights)


class RankingParams(OfferFilters):
    weights: str | None = WEIGHTS
    top: int = Field(10, ge=1, le=MAX_LIMIT)

    _weights = field_validator("weights")(classmethod(lambda cls, v: _check_weights(v)))


class Criterion(JsonBody):
    name: CriterionName
    weight: float = Field(1.0, gt=0, le=1000, description="above zero (leave a criterion out to ignore it)")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default: minimize prices, maximize the rest")

    @property
    def benefit(self) -> bool:
        return CRITERIA[self.name][0] if self.direction is None else self.direction == "maximize"


class DecideBody(JsonBody):
    method: Literal["topsis", "weighted_sum", "pareto"] = "topsis"
    criteria: list[Criterion] = Field(..., min_length=1, max_length=2 * len(CRITERIA), description="a criterion named twice: the later one counts")
    filters: FilterBody = Field(default_factory=FilterBody)
    top_k: int = Field(10, ge=1, le=MAX_LIMIT)

    @model_validator(mode="after")
    def _criteria(self) -> DecideBody:
        # As with keys of a JSON object, the last mention of a criterion wins (in its first place).
        last = {c.name: c for c in self.criteria}
        self.criteria = [last[name] for name in dict.fromkeys(c.name for c in self.criteria)]
        return self


for _model in (FilterBody, QueryBody, Criterion, DecideBody):
    _record_json_kinds(_model)


# Subscriptions as the stream takes them: up to 20, comma-separated; names of printable ASCII that
# start with a letter or digit (so each maps to a Channels group). The schema's pattern and the check.
_SUBSCRIPTION = r"(?:price_updates|health_status|availability|(?:provider|gpu|region):[A-Za-z0-9][ -+\--~]{0,89})"
SUBSCRIBE_PATTERN = rf"^[ \t]*{_SUBSCRIPTION}[ \t]*(?:,[ \t]*{_SUBSCRIPTION}[ \t]*){{0,19}}$"
_SUBSCRIBE = re.compile(SUBSCRIBE_PATTERN)


class StreamParams(Request):
    subscribe: str = Field("price_updates", max_length=2000, json_schema_extra={"pattern": SUBSCRIBE_PATTERN},
                           description="price_updates, health_status, availability, provider:<slug>, gpu:<type>, region:<name>; up to 20, comma-separated")

    @field_validator("subscribe")
    @classmethod
    def _subscriptions(cls, value: str) -> str:
        if not _SUBSCRIBE.match(value):
            raise ValueError("expected up to 20 comma-separated subscriptions: price_updates, health_status, availability, "
                             "or provider:, gpu:, region: followed by a name starting with a letter or digit")
        return value


def _utc(value: datetime) -> datetime:
    """In UTC, clamped to what Python can hold: 0001-01-01T00:00:00+01:00 is before datetime.min."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


DateTime = Annotated[datetime, WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN})]


class HistoryParams(Request):
    gpu_type: str | None = Field(None, min_length=1, max_length=TEXT)
    offer_id: int | None = Field(None, ge=1, le=MAX_ID)
    since: DateTime | None = None
    until: DateTime | None = None
    resolution: Literal["minute", "change"] = Field("minute", description="minute: per-GPU-type aggregates; change: every recorded change of an offer")

    @field_validator("gpu_type", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        # pydantic would also read numbers as Unix times and accept a time without an offset.
        if value is not None and not (isinstance(value, str) and _DATETIME.match(value)):
            raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2025-01-01T00:00:00Z")
        return value

    @field_validator("since", "until", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None

    @model_validator(mode="after")
    def _one_subject(self) -> HistoryParams:
        if (self.gpu_type is None) == (self.offer_id is None):
            raise ValueError("gpu_type: give exactly one of gpu_type or offer_id")
        if self.resolution == "minute" and self.gpu_type is None:
            raise ValueError("resolution: minute aggregates are per gpu_type; use resolution=change for an offer")
        return self


def _history_variant(subject: str, subject_schema: dict[str, Any], resolution: dict[str, Any], other: str) -> dict[str, Any]:
    when = {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}
    return {
        "type": "object",
        "properties": {subject: subject_schema, "resolution": resolution, "since": when, "until": when},
        "required": [subject] + (["resolution"] if "const" in resolution else []),
        "not": {"required": [other]},
    }


# OpenAPI cannot tie query parameters together, but one object parameter (form style, exploded:
# the same ?gpu_type=…&resolution=… on the wire) can say "exactly one of gpu_type or offer_id".
HISTORY_OPENAPI = {
    "x-parameters": [{
        "in": "query", "name": "history", "required": True, "style": "form", "explode": True,
        "description": "gpu_type (resolution minute, the default, or change), or offer_id with resolution=change; "
                       "since/until default to the last 24 hours; an empty window has no points",
        "schema": {"oneOf": [
            _history_variant("gpu_type", {"type": "string", "minLength": 1, "maxLength": TEXT, "pattern": "^[^\\x00]*$"},
                             {"type": "string", "enum": ["minute", "change"], "default": "minute"}, "offer_id"),
            _history_variant("offer_id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, {"type": "string", "const": "change"}, "gpu_type"),
        ]},
    }],
}


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

