"""`authz demo` runs the story in the terminal and exits 0 when every step did its part."""

from __future__ import annotations

from click.testing import CliRunner

from authz.cli import authz_cli


def test_authz_demo_runs_every_step(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTHZ_DATABASE_URL", raising=False)
    result = CliRunner().invoke(authz_cli, ["demo", "--instance", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    steps = [line for line in lines if line.startswith("[")]
    assert [s.split("]")[0] for s in steps] == [f"[{n}/8" for n in range(1, 9)]
    assert "medication permit (consent)" in result.output
    assert "medication deny (no_consent)" in result.output
    assert "auditor console (kansa.json): Intact: no alteration found" in result.output
    assert lines[-1] == "demo story complete: every step did what it should"


def test_authz_demo_refuses_a_used_instance_folder(tmp_path):
    folder = tmp_path / "used"
    folder.mkdir()
    (folder / "authz.db").write_bytes(b"")
    result = CliRunner().invoke(authz_cli, ["demo", "--instance", str(folder)])
    assert result.exit_code == 2
    assert "already holds a database" in result.output


def test_authz_demo_names_the_step_that_went_wrong(tmp_path, monkeypatch):
    from authz import demo_cli

    # The patient "forgets" to revoke: the next read is still permitted, and step 6 says so.
    monkeypatch.setattr(demo_cli.Story, "revoke", lambda self: None)
    result = CliRunner().invoke(authz_cli, ["demo", "--instance", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert "authz: error: step 6 (second_read) failed: expected deny, got permit" \
        in result.output
