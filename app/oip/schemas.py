"""JSON objects of the Open Inference Protocol's REST API, as pydantic models.

Field names follow the specification (kserve/open-inference-protocol, inference_rest.md);
``parameters`` objects name the binary tensor data extension's parameters and take any other
(custom parameters are accepted and ignored, as the specification allows).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Dimension = Annotated[StrictInt, Field(ge=0)]


class _Closed(BaseModel):
    """Unknown fields are errors: a misspelt field is reported, not ignored."""

    model_config = ConfigDict(extra="forbid")


class _Parameters(BaseModel):
    """``$parameters``: the known keys are typed; any other key is accepted and ignored."""

    model_config = ConfigDict(extra="allow")


class InputParameters(_Parameters):
    binary_data_size: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None,
        description="Binary tensor data extension: the input's data follows the JSON object "
        "in the body, this many bytes of it.",
    )


class OutputParameters(_Parameters):
    binary_data: StrictBool | None = Field(
        default=None, description="Return this output as binary data after the JSON object."
    )


class RequestParameters(_Parameters):
    binary_data_output: StrictBool | None = Field(
        default=None,
        description="Return every output as binary data unless it says otherwise.",
    )
    priority: Annotated[StrictInt, Field(ge=0)] | None = Field(
        default=None,
        description=(
            "1 (the most urgent) to FUSIONSERVE_PRIORITY_LEVELS; 0 or left out: the default "
            "(Triton's request priority)."
        ),
    )


class RequestInput(_Closed):
    name: str
    shape: list[Dimension]
    datatype: str
    parameters: InputParameters | None = None
    data: list[Any] | None = Field(
        default=None,
        description="The elements, flat or nested row-major; left out when the data is binary.",
    )


class RequestOutput(_Closed):
    name: str
    parameters: OutputParameters | None = None


class InferenceRequest(_Closed):
    """The request's top level is closed too, but for the model's name and version, which
    KServe's SDK repeats in the body (``InferRequest.to_rest``) and the protocol's servers
    accept; they must name what the path names."""

    model_name: str | None = Field(
        default=None,
        description="The model of the path, repeated (KServe's SDK sends it); another is a 400.",
    )
    model_version: str | None = Field(
        default=None,
        description="The version served at the path, repeated; another is a 400. Empty: none.",
    )
    id: str | None = None
    parameters: RequestParameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(
        default=None, description="The outputs to return; all of them when left out."
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, int] | None = Field(
        default=None, description="``binary_data_size`` when the data follows the JSON object."
    )
    data: list[Any] | None = Field(default=None, description="Row-major, flat; or binary.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a variable-size dimension.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="FusionServe's additions: labels and modalities."
    )


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ErrorBody(BaseModel):
    """Every error under /v2: ``{"error": "<message>"}``, with the HTTP status saying which."""

    error: str
