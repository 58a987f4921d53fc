"""Schemathesis fuzzes the whole HTTP API from its /openapi.json: no input may be a server error, and every
response must match its documented schema.

The server is the real app (routes, services, strategies, middleware) served by uvicorn over the fake engine and
fake verifiers, so thousands of requests take seconds; the engines' own input handling has its own tests. The
``model`` field is pinned to the served name in a copy of the spec, or nearly every request would be a 404.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from ponder.core.types import EngineCapabilities
from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine, RulePRM, TableVerifier
from ponder.verifiers.registry import VerifierSet
from tests.helpers import fake_app, live

ST = shutil.which("st", path=str(Path(sys.executable).parent))
MAX_EXAMPLES = 400  # per operation, after the coverage phase: about 45 s on 2 shared cores (2,700 requests)
TIMEOUT = 240  # a hard bound on a much slower machine


def pinned_spec(spec: dict, model: str) -> dict:
    """The spec with every request's ``model`` fixed to the served name."""
    for schema in spec["components"]["schemas"].values():
        if "model" in schema.get("properties", {}):
            schema["properties"]["model"] = {"type": "string", "enum": [model]}
    return spec


@pytest.mark.skipif(ST is None, reason="schemathesis is installed by the test extra")
async def test_schemathesis_finds_no_server_error_and_no_response_off_its_schema(tmp_path):
    caps = EngineCapabilities(max_model_len=512, max_prompt_chars=512 * 13)
    verifiers = VerifierSet([RulePRM(name="prm"), TableVerifier({}, default=0.5, name="orm")], default="prm")
    app, _ = fake_app(FakeEngine(capabilities=caps), ServerSettings(), verifiers)
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(pinned_spec(app.openapi(), "fake-model")))
    async with live(app) as url:
        argv = [ST, "run", str(spec), "--url", url, "--checks", "not_a_server_error,response_schema_conformance"]
        argv += ["--max-examples", str(MAX_EXAMPLES), "--seed", "0", "--workers", "1", "--no-color"]
        argv += ["--generation-database", "none", "--request-timeout", "30", "--report-dir", str(tmp_path)]
        output = asyncio.subprocess.PIPE  # and its caches go to the test's folder, not the checkout
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=output, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path
        )
        output, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    report = output.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert "No issues found" in report
