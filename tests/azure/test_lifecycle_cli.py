"""`imgpub prune --yes --json` and `imgpub status --all-versions --detailed-exitcode` as a CI job runs
them against the Azure stand-ins (real clock, DefaultAzureCredential, a state dir), with a prune
killed -9 in the middle of a delete and finished by the next one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fakes.azurite import API_VERSION, connection_string

POLICY = {"keep": 1, "deprecate_after": "30d", "delete_after": "90d"}


def blob_exists(stack, name: str) -> bool:
    from azure.storage.blob import BlobClient

    blob = BlobClient.from_connection_string(
        connection_string(stack.proxy.url), stack.container, name, api_version=API_VERSION
    )
    return bool(blob.exists())


def test_prune_killed_in_a_delete_then_finished_and_the_matrix_through_the_command(versions, stack, cli):
    now = datetime.now(UTC)
    for version, age in (("1.0.0", 200), ("1.1.0", 100), ("1.2.0", 1)):
        versions.publish(version, keep_upload=version == "1.0.0")
        versions.age(version, now - timedelta(days=age))
    manifest = str(versions.manifest("1.2.0", POLICY))

    code, out, err = cli.run("prune", manifest, "--yes", "--json")

    assert code == 0, err
    report = json.loads(out)
    actions = {v["version"]: v for v in report["targets"][0]["versions"]}
    assert {v: a["action"] for v, a in actions.items()} == {
        "1.2.0": "current",
        "1.1.0": "keep",
        "1.0.0": "deprecate",
    }
    assert any("endOfLifeDate" in line for line in actions["1.0.0"]["done"])

    hold = stack.arm.hold("DELETE", r"/images/golden-1\.0\.0$")  # the managed image goes after the version
    proc = cli.command("prune", manifest, "--yes", "--json")
    assert hold.arrived.wait(120), "the prune reached the managed image's delete"
    proc.kill()  # kill -9 between the version's delete and the image's
    proc.communicate()
    hold.drop()
    assert stack.arm.get("galleries/g1/images/golden/versions/1.0.0") is None
    assert stack.arm.get("images/golden-1.0.0") is not None and blob_exists(stack, "golden-1.0.0.vhd")

    code, out, err = cli.run("status", manifest, "--all-versions", "--detailed-exitcode", "--json")

    assert code == 2, err
    cells = {(c["version"], c["region"]): c["state"] for c in json.loads(out)["targets"][0]["cells"]}
    assert cells == {("1.2.0", "westeurope"): "active", ("1.1.0", "westeurope"): "active",
                     ("1.0.0", "westeurope"): "deleting"}  # fmt: skip

    finish = str(versions.manifest("1.2.0", {"keep": 5}, name="keep-five.yaml"))  # would keep 1.0.0
    code, out, err = cli.run("prune", finish, "--yes", "--json")

    assert code == 0, err
    (finished,) = [v for v in json.loads(out)["targets"][0]["versions"] if v["version"] == "1.0.0"]
    assert finished["action"] == "finish"
    assert "deleted image golden-1.0.0" in finished["done"]
    assert "deleted upload blob golden-1.0.0.vhd" in finished["done"]
    assert stack.arm.get("images/golden-1.0.0") is None and not blob_exists(stack, "golden-1.0.0.vhd")
    code, out, err = cli.run("status", manifest, "--all-versions", "--detailed-exitcode")
    assert code == 0, out + err
    assert "1.0.0" not in out and "1.1.0" in out
