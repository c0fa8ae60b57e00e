"""The pydantic models of the scenario file (planner/io/schema.py), their JSON Schema and ``vplan schema``."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from planner.cli.main import app
from planner.io import loader, schema
from planner.io.loader import ScenarioError, load_scenario, load_scenario_text

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
HOST_MODELS = sorted((REPO / "models").glob("**/*.yaml"))
HOST_MODELS = [p for p in HOST_MODELS if p.name != "flavours.yaml"]


def as_json(data: object) -> object:
    """YAML data as JSON sees it (integer keys become strings, as in an editor's YAML-to-JSON view)."""
    return json.loads(json.dumps(data, default=str))


def validator(kind: str) -> jsonschema.Draft202012Validator:
    document = schema.json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def schema_errors(kind: str, data: object) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(kind).iter_errors(
        as_json(data)))


# ---------------------------------------------------------------------------------------------------------------
# every file of the repository validates


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_validates_against_the_schema(path: Path) -> None:
    assert schema_errors("scenario", yaml.safe_load(path.read_text())) == []
    load_scenario(path)  # and the loader agrees


def test_there_are_scenarios_and_models_to_check() -> None:
    assert len(SCENARIOS) >= 9 and len(HOST_MODELS) >= 11


@pytest.mark.parametrize("path", HOST_MODELS, ids=lambda p: p.name)
def test_every_host_model_file_validates_against_the_schema(path: Path) -> None:
    assert schema_errors("host-model", yaml.safe_load(path.read_text())) == []


def test_the_flavour_catalogue_validates_and_every_flavour_is_a_guest() -> None:
    data = yaml.safe_load((REPO / "models" / "flavours.yaml").read_text())
    assert schema_errors("flavours", data) == []
    guests = [{"name": f"g{i}", **spec} for i, spec in enumerate(data["flavours"].values())]
    assert schema_errors("scenario", {"version": 1, "name": "f", "guests": guests}) == []


# ---------------------------------------------------------------------------------------------------------------
# bad files are rejected by the schema (and by the loader)

BASE = {"version": 1, "name": "s",
        "host_models": {"m": {"nodes": [{"id": 0, "cpus": "0-7", "memory": "64GiB", "hugepages": {"1G": 4}}]}},
        "hosts": [{"name": "h[1-2]", "model": "m"}],
        "guests": [{"name": "web[01-04]", "vcpus": 2, "memory": "4GiB"}]}


def mutated(path: str, value: object) -> dict:
    data = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


BAD = [
    ("guests.0.memry", "4GiB", "guests.0: Additional properties are not allowed ('memry' was unexpected)"),
    ("guests.0.memory", "4 GB of RAM", "guests.0.memory: '4 GB of RAM' does not match"),
    ("guests.0.memory", 4, "guests.0.memory: 4 is not of type 'string'"),
    ("guests.0.cpu", "dedicatd", "guests.0.cpu: 'dedicatd' is not one of ['shared', 'dedicated']"),
    ("guests.0.vcpus", KeyError, "guests.0: 'vcpus' is a required property"),
    ("guests.0.vcpus", 0, "guests.0.vcpus: 0 is not valid under any of the given schemas"),
    ("guests.0.load", 1.5, "guests.0.load: 1.5 is greater than the maximum of 1"),
    ("guests.0.hugepages", "3X", "guests.0.hugepages: '3X' is not valid under any of the given schemas"),
    ("guests.0.name", "web 01", "guests.0.name: 'web 01' does not match"),
    ("version", 2, "version: 1 was expected"),
    ("name", KeyError, ": 'name' is a required property"),
    ("policy", {"cpu_overcommit_max": 9}, "policy.cpu_overcommit_max: 9 is greater than the maximum of 8"),
    ("policy", {"survive": {"hosts": 2}}, "policy.survive: {'hosts': 2} is not valid under any of the given schemas"),
    ("policy", {"objective": "fast"}, "policy.objective: 'fast' is not one of ['pack', 'spread']"),
    ("host_models.m.nodes.0.cpus", "0-7,^x", "host_models.m.nodes.0.cpus: '0-7,^x' is not valid under any of"),
    ("host_models.m.nodes.0.hugepages", {"1G": -1},
     "host_models.m.nodes.0.hugepages.1G: -1 is less than the minimum of 0"),
    ("host_models.m.threads_per_cor", 2, "host_models.m: Additional properties are not allowed ('threads_per_cor'"),
    ("hosts.0.rack", [1], "hosts.0.rack: [1] is not of type 'string', 'integer'"),
    ("guests.0.domain", {"cpu_mode": "passthrough"}, "guests.0.domain.cpu_mode: 'passthrough' is not one of"),
]


@pytest.mark.parametrize(("path", "value", "error"), BAD, ids=[f"{p}={v}" for p, v, _ in BAD])
def test_bad_files_are_rejected_by_the_schema_and_the_loader(path: str, value: object, error: str) -> None:
    data = mutated(path, value)
    errors = schema_errors("scenario", data)
    assert any(e.startswith(error) for e in errors), errors
    with pytest.raises(ScenarioError):
        load_scenario_text(yaml.safe_dump(data), filename="bad.yaml")


def test_the_base_of_the_bad_files_is_good() -> None:
    assert schema_errors("scenario", BASE) == []
    assert len(load_scenario_text(yaml.safe_dump(BASE)).guests) == 4


def test_explicit_cells_make_vcpus_and_memory_optional_in_the_schema() -> None:
    cells = {"name": "a", "numa": [{"vcpus": 2, "memory": "2GiB"}, {"vcpus": 2, "memory": "2GiB"}]}
    assert schema_errors("scenario", {**BASE, "guests": [cells]}) == []
    assert schema_errors("scenario", {**BASE, "guests": [{**cells, "numa": [{"vcpus": 2}]}]}) == [
        "guests.0.numa: [{'vcpus': 2}] is not valid under any of the given schemas"]


def test_a_host_model_file_with_a_typo_is_rejected() -> None:
    errors = schema_errors("host-model", {"nodes": [{"id": 0, "cpus": "0-3", "memory": "8GiB", "hugepage": {}}]})
    assert errors == ["nodes.0: Additional properties are not allowed ('hugepage' was unexpected)"]


# ---------------------------------------------------------------------------------------------------------------
# the schema carries the documentation and the loader's keys


def test_every_property_has_a_description_and_the_loader_keys() -> None:
    defs = schema.json_schema()["$defs"]
    for name, definition in defs.items():
        for key, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key}"
            assert prop["title"] == key
    assert tuple(defs["GuestSpec"]["properties"]) == loader.GUEST_KEYS
    assert tuple(defs["PolicySpec"]["properties"]) == loader.POLICY_KEYS
    assert tuple(defs["HostModelSpec"]["properties"]) == loader.MODEL_KEYS
    assert "survive" in loader.POLICY_KEYS and "lscpu" in loader.MODEL_KEYS and "zone" in loader.HOST_KEYS


# ---------------------------------------------------------------------------------------------------------------
# check_mapping: the validation the loader uses


def test_check_mapping_collects_every_problem_in_the_loaders_order() -> None:
    result = schema.check_mapping(schema.GuestSpec, {"name": "db1", "vcpus": "x", "memry": 2, "cpu": "dedicatd",
                                                     "load": 0.5, "hugepages": "2M"},
                                  required=("name", "vcpus", "memory"),
                                  context={"page_sizes": {1048576}, "pages_known": True})
    assert result.problems == [
        (("memry",), "unknown key (did you mean 'memory'? known keys: " + ", ".join(loader.GUEST_KEYS) + ")"),
        (("memory",), "required key is missing"),
        (("vcpus",), "'x' is not an integer"),
        (("cpu",), "'dedicatd' is not one of: shared, dedicated; did you mean 'dedicated'?"),
        (("hugepages",), "no host model lists 2M pages in a node's hugepages (listed: 1G)"),
    ]
    assert result.values == {"name": ["db1"], "load": Fraction(1, 2)}  # the valid keys, parsed
    assert result.bad_keys == {"vcpus", "cpu", "hugepages"} and result.value_problems == 3


def test_check_mapping_of_a_non_mapping_and_of_a_good_one() -> None:
    bad = schema.check_mapping(schema.PolicySpec, [1])
    message = "expected a mapping, e.g. {cpu_overcommit_max: 4}, got a list"
    assert (bad.mapping, bad.problems) == (False, [((), message)])
    good = schema.check_mapping(schema.PolicySpec, {"time_limit": "2m", "survive": {"racks": 1}})
    assert good.problems == [] and good.values == {"time_limit": 120.0, "survive": ("racks", 1)}


def test_the_loader_reports_policy_problems_through_the_models() -> None:
    text = yaml.safe_dump({**BASE, "policy": {"stall": "-1", "survive": {"hosts": 3}, "tenant_isolation": "rack",
                                              "cpu_load_targt": 0.5}})
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, filename="p.yaml")
    assert info.value.problems == [
        ("p.yaml: policy.cpu_load_targt: unknown key (did you mean 'cpu_load_target'? known keys: "
         + ", ".join(loader.POLICY_KEYS) + ")"),
        "p.yaml: policy.stall: '-1' is not a duration (expected e.g. 60s or 2m)",
        "p.yaml: policy.tenant_isolation: 'rack' is not one of: none, core, node, host",
        ("p.yaml: policy.survive: hosts: 3 is not supported (expected 0 or 1: vplan plans for one failed host at "
         "a time)"),
    ]


# ---------------------------------------------------------------------------------------------------------------
# vplan schema


def test_vplan_schema_prints_the_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema.json_schema("scenario")
    host = CliRunner().invoke(app, ["schema", "--kind", "host-model"])
    assert json.loads(host.stdout)["title"] == "vplan host model file"


def test_vplan_schema_writes_atomically_and_keeps_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "scenario.schema.json"
    runner = CliRunner()
    assert runner.invoke(app, ["schema", "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == schema.json_schema()
    assert runner.invoke(app, ["schema", "-o", str(out)]).exit_code == 0  # its own output: replaced
    foreign = tmp_path / "mine.json"
    foreign.write_text("{}\n")
    refused = runner.invoke(app, ["schema", "-o", str(foreign)])
    assert refused.exit_code == 2 and foreign.read_text() == "{}\n"
    assert "exists and was not written by vplan" in refused.output
    forced = runner.invoke(app, ["schema", "-o", str(foreign), "--force"])
    assert forced.exit_code == 0 and (tmp_path / "mine.json.old").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "mine.json.old", "scenario.schema.json"]
    assert runner.invoke(app, ["schema", "--kind", "plan"]).exit_code == 2


def test_an_included_model_file_named_twice_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "box.yaml").write_text("nodes: [{id: 0, cpus: '0-3', memory: 8GiB}]\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\nname: twice\nhost_models:\n  a: {include: box.yaml}\n  b: {include: box.yaml}\n"
                        "hosts: [{name: h1, model: a}, {name: h2, model: b}]\nguests: []\n")
    reads: list[str] = []
    real = loader.read_input_text
    monkeypatch.setattr(loader, "read_input_text", lambda path, limit: reads.append(path) or real(path, limit))
    loaded = load_scenario(scenario)
    assert [Path(p).name for p in reads] == ["s.yaml", "box.yaml"]
    assert loaded.host_models["a"].nodes == loaded.host_models["b"].nodes and loaded.host_models["b"].name == "b"


@pytest.mark.parametrize("kind", schema.SCHEMA_KINDS)
def test_the_schemas_in_the_repository_are_up_to_date(kind: str) -> None:
    """planner/schemas/KIND.schema.json is what `vplan schema --kind KIND` writes (regenerate after a model change:
    `vplan schema --kind KIND -o planner/schemas/KIND.schema.json`)."""
    from planner.cli.schema import schema_text

    assert (REPO / "planner" / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8") == schema_text(kind)


def test_every_scenario_the_loader_accepts_the_schema_accepts() -> None:
    """The property fleets (every feature: explicit cells, tenants, racks, survive, fixed guests, ...) are loaded by
    the loader; the JSON Schema must accept each of them too (the schema is never stricter than the loader)."""
    from hypothesis import HealthCheck, given, settings

    from tests.strategies import fleets

    check = validator("scenario")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(fleets())
    def accepted(fleet: tuple[str, object]) -> None:
        text, _ = fleet
        assert [e.message for e in check.iter_errors(as_json(yaml.safe_load(text)))] == []

    accepted()
