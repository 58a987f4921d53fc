"""The transformers engine constrains decoding with xgrammar: a random tiny model writes only schema-valid JSON."""

from __future__ import annotations

import asyncio
import json

import pytest

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Prompt, SamplingParams, StructuredOutput

pytest.importorskip("torch")
pytest.importorskip("xgrammar")
jsonschema = pytest.importorskip("jsonschema")

CHAT = Prompt.chat([{"role": "user", "content": "Is 12+7 19?"}])
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "unit": {"enum": ["cm", "kg"]}},
    "required": ["ok", "unit"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from ponder.engines.hf_engine import HFEngine

    engine = HFEngine(str(tiny_model_dir), served_model_name="tiny", seed=0)
    yield engine
    asyncio.run(engine.aclose())


async def test_every_sample_follows_the_schema(engine):
    assert engine.capabilities.structured_outputs
    params = SamplingParams(temperature=1.0, max_tokens=48, seed=1, structured=StructuredOutput(json.dumps(SCHEMA)))
    samples = await engine.generate(CHAT, params, n=3)
    for sample in samples:
        assert sample.finish_reason == "stop", sample
        jsonschema.validate(json.loads(sample.text), SCHEMA)
    free = await engine.generate(CHAT, SamplingParams(temperature=1.0, max_tokens=16, seed=1), n=1)
    with pytest.raises(ValueError):
        json.loads(free[0].text)  # unconstrained, the random model writes no JSON


async def test_json_object_streams_an_object(engine):
    params = SamplingParams(temperature=0, max_tokens=24, structured=StructuredOutput(json_object=True))
    text = "".join([d.text async for d in engine.stream(CHAT, params)])
    assert text.startswith("{")


async def test_a_schema_xgrammar_cannot_compile_is_a_400_naming_response_format(engine):
    bad = StructuredOutput(json_schema=json.dumps({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}))
    with pytest.raises(InvalidRequestError) as info:
        await engine.generate(CHAT, SamplingParams(max_tokens=8, structured=bad))
    assert info.value.param == "response_format"
