"""What a command loads: little for --help and usage errors, no rich or pydantic for --json,
the key derived before numpy; and the pydantic-free parameter conversion matches typer's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer._coercion import build_runtime_param

import strongroom.files
from strongroom import collector
from strongroom.cli import coercion, options, vault_cmds
from strongroom.cli import main as cli_main
from strongroom.cli.files import CONFLICT_POLICIES
from strongroom.cli.main import app, main
from strongroom.cli.output import Table
from strongroom.storage import LocalBackend
from strongroom.vault import KDFParams, Vault
from strongroom.vault import keys as keyslots
from strongroom.vault.config import COMPRESSION_LEVELS
from tests.conftest import FAST_KDF, PASSPHRASE

WATCHED = (
    "numpy",
    "cryptography",
    "pydantic",
    "rich",
    "libvirt",
    "obstore",
    "strongroom.storage",
    "strongroom.vault.vault",
    "strongroom.files",
    "strongroom.image",
    "fastcdc",
    "click",
    "strongroom.files.channel",
    "multiprocessing",
    "sqlite3",
)
# numpy is not among them: a small vault's index is searched in plain Python; nor is
# cryptography: AES-GCM goes through the libcrypto Python has loaded (vault/_gcm.c; issue 19)
VAULT = {"strongroom.storage", "strongroom.vault.vault"}


def loaded_by(
    argv: list[str], env: dict[str, str] | None = None, watched: tuple[str, ...] = WATCHED
) -> tuple[int, set[str], set[str]]:
    """Run the CLI in a fresh interpreter: its exit code, the watched modules loaded by the
    end, and those loaded when the key derivation started."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import strongroom.vault.kdf
        watched = {watched!r}
        at_kdf = []
        derive = strongroom.vault.kdf.argon2id

        def spy(*args, **kwargs):
            at_kdf.extend(m for m in watched if m in sys.modules)
            return derive(*args, **kwargs)

        strongroom.vault.kdf.argon2id = spy
        from strongroom.cli.main import main
        code = main({argv!r})
        done = [m for m in watched if m in sys.modules]
        sys.stderr.write("\\n" + json.dumps([code, done, at_kdf]) + "\\n")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    code, done, at_kdf = json.loads(proc.stderr.strip().splitlines()[-1])
    return code, set(done), set(at_kdf)


@pytest.fixture
def vault_env(tmp_path: Path) -> dict[str, str]:
    Vault.init(LocalBackend(tmp_path / "vault"), PASSPHRASE, kdf=FAST_KDF)
    return {
        "STRONGROOM_VAULT": str(tmp_path / "vault"),
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def test_help_version_and_usage_errors_load_no_engine() -> None:
    code, done, _ = loaded_by(["--help"])
    assert code == 0 and done <= {"rich"}  # typer draws help with rich
    code, done, _ = loaded_by(["version"])
    assert code == 0 and not done
    code, done, _ = loaded_by(["points", "--no-such-option"])
    assert code == 2 and done <= {"rich"}


def test_json_commands_load_neither_rich_nor_pydantic(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    code, done, at_kdf = loaded_by(["backup", "files", str(src), "--json"], vault_env)
    assert code == 0
    # the key is derived before the rest loads: a backup has only its options and the
    # warm start's look at the paths (files/warmstart.py) by then, no SQLite, no chunker
    assert at_kdf == {"strongroom.storage", "strongroom.files"}
    # neither fastcdc's package (its __init__ loads click; the C scan reads its gear table
    # from the source) nor the worker-process machinery (no workers for a small tree)
    assert done == VAULT | {"strongroom.files", "sqlite3"}
    (src / "b.txt").write_text("beta")  # a second backup looks up the first one's chunks
    code, done, _ = loaded_by(["backup", "files", str(src), "--json"], vault_env)
    assert code == 0 and done == VAULT | {"strongroom.files", "sqlite3"}
    # a restore loads none of the backup side (chunking, the files cache)
    target = str(tmp_path / "restored")
    code, done, at_kdf = loaded_by(
        ["restore", "files", "latest", "-t", target, "--json"], vault_env
    )
    assert code == 0
    assert at_kdf == {"strongroom.storage"}
    assert done == VAULT | {"strongroom.files"}
    code, done, at_kdf = loaded_by(["points", "--json"], vault_env)
    assert code == 0
    assert at_kdf == {"strongroom.storage"}
    assert done == VAULT  # listing points needs no chunk index (issue 19)


def test_disk_backup_and_restore_load_no_numpy(vault_env: dict[str, str], tmp_path: Path) -> None:
    """The image engine's chunk maps and sparse writes need no numpy either (issue 19)."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(3 << 20) + bytes(1 << 20) + b"tail")
    code, done, _ = loaded_by(["backup", "disk", str(disk), "--json"], vault_env)
    assert code == 0 and "numpy" not in done and "strongroom.image" in done
    out = tmp_path / "out.raw"
    code, done, _ = loaded_by(
        ["restore", "disk", "latest", "--to", str(out), "-f", "raw", "--json"], vault_env
    )
    assert code == 0 and "numpy" not in done
    assert out.read_bytes() == disk.read_bytes()


def test_the_key_is_derived_before_openssl_and_sockets_load(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    """Argon2id's 32 MiB add to what is loaded by then: the system's OpenSSL (``_hashlib``,
    3.6 MiB here) and the socket module come after it (issue 19: peak RSS)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    watched = ("_hashlib", "socket", "ssl")
    for argv in (["backup", "files", str(src), "--json"], ["points", "--json"]):
        code, _, at_kdf = loaded_by(argv, vault_env, watched)
        assert code == 0 and at_kdf == set(), argv


# the command modules (completion is always loaded: it answers completion requests) and rich
COMMAND_MODULES = tuple(f"strongroom.cli.{m}" for m in cli_main._MODULES if m != "completion")
# and the storage layer's in-memory backend, which no command uses
TEST_BACKENDS = ("strongroom.storage.memory",)
ON_DEMAND = (*COMMAND_MODULES, "rich", *TEST_BACKENDS)


def test_a_command_loads_only_its_own_command_module(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    code, done, _ = loaded_by(["points"], vault_env, ON_DEMAND)
    assert code == 0 and done == {"strongroom.cli.vault_cmds"}  # the table is drawn plainly
    code, done, _ = loaded_by(["key", "list"], vault_env, ON_DEMAND)
    assert code == 0 and done == {"strongroom.cli.keys"}
    code, done, _ = loaded_by(["version"], None, ON_DEMAND)
    assert code == 0 and not done
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "[red]a").write_text("alpha")
    # human output on a pipe, as from cron: no rich
    code, done, _ = loaded_by(["backup", "files", str(tmp_path / "src")], vault_env, ON_DEMAND)
    assert code == 0 and done == {"strongroom.cli.files"}  # not the group's other commands
    target = str(tmp_path / "restored")
    code, done, _ = loaded_by(["restore", "files", "latest", "-t", target], vault_env, ON_DEMAND)
    assert code == 0 and done == {"strongroom.cli.files"}
    code, done, _ = loaded_by(["backup", "--help"], None, ON_DEMAND)  # the whole group
    backup_side = {"files", "image", "stream", "vm"}  # image uses vm's
    assert code == 0 and done == {f"strongroom.cli.{m}" for m in backup_side} | {"rich"}
    code, done, _ = loaded_by(
        ["diff", "latest", "--live", str(tmp_path / "src")], vault_env, ON_DEMAND
    )
    assert code == 0 and done == {"strongroom.cli.files"}
    code, done, _ = loaded_by(["--help"], None, ON_DEMAND)
    assert code == 0 and done == {*COMMAND_MODULES, "rich"}  # the whole tree, drawn with rich


def test_every_command_has_its_modules_listed() -> None:
    whole = typer.main.get_command(app)
    assert set(cli_main._HOMES) == set(whole.commands)  # type: ignore[attr-defined]
    for name in whole.commands:  # type: ignore[attr-defined]
        only = typer.main.get_command(cli_main._app_for([name, "--help"]))
        assert set(only.commands) == {name}  # type: ignore[attr-defined]
        help_of = only.commands[name].help  # type: ignore[attr-defined]
        assert help_of == whole.commands[name].help  # type: ignore[attr-defined]


def test_every_backup_and_restore_command_has_its_module_listed() -> None:
    whole = typer.main.get_command(app)
    for group, homes in cli_main._SUB_HOMES.items():
        everything = whole.commands[group]  # type: ignore[attr-defined]
        assert set(homes) == set(everything.commands)
        for sub in homes:
            only = typer.main.get_command(cli_main._app_for([group, sub, "--help"]))
            (narrowed,) = only.commands.values()  # type: ignore[attr-defined]
            assert set(narrowed.commands) == {sub}
            got, want = narrowed.commands[sub], everything.commands[sub]
            assert got.help == want.help
            assert [p.name for p in got.params] == [p.name for p in want.params]


def test_plain_table_lines_up_columns() -> None:
    table = Table("id", "source", "size")
    table.add_row("ab12", "\u65e5\u672c", "1 B")
    table.add_row("cd3456", "[red]x[/]", "")
    assert table.lines() == [
        " id      source     size",
        " ab12    \u65e5\u672c       1 B",
        " cd3456  [red]x[/]",
    ]
    bare = Table(show_header=False)
    bare.add_row("key", "value")
    assert bare.lines(bold=True) == [" key  value"]
    assert Table("a", "b").lines(bold=True) == ["\x1b[1m a  b\x1b[0m"]


def test_openblas_gets_one_thread_unless_told_otherwise() -> None:
    def threads(env: dict[str, str]) -> str:
        code = "import os, strongroom.cli; print(os.environ['OPENBLAS_NUM_THREADS'])"
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return run.stdout.strip()

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert threads(env) == "1"
    assert threads({**env, "OPENBLAS_NUM_THREADS": "3"}) == "3"


def test_cli_constants_match_the_library() -> None:
    kdf = KDFParams()
    assert kdf.memory_kib == vault_cmds.KDF_MEMORY_MIB * 1024
    assert kdf.time_cost == vault_cmds.KDF_TIME_COST
    assert vault_cmds.KDF_MEMORY_MAX_MIB * 1024 == keyslots.MAX_MEMORY_KIB
    assert vault_cmds.KDF_TIME_MAX == keyslots.MAX_TIME_COST
    assert CONFLICT_POLICIES == strongroom.files.CONFLICT_POLICIES
    levels = range(options.COMPRESSION_LEVEL_MIN, options.COMPRESSION_LEVEL_MAX + 1)
    assert levels == COMPRESSION_LEVELS


def test_init_uses_the_default_kdf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    assert main(["init", "--vault", str(tmp_path / "v"), "--json"]) == 0
    capsys.readouterr()
    (slot,) = Vault.open(LocalBackend(tmp_path / "v"), PASSPHRASE).list_keys()
    assert slot.kdf == KDFParams()


# --- parameter conversion --------------------------------------------------------------------


def _samples(annotation: Any, tmp_path: Path) -> list[Any]:
    readable = tmp_path / "readable"
    readable.write_text("x")
    unreadable = tmp_path / "unreadable"
    unreadable.write_text("x")
    unreadable.chmod(0)
    numbers = ["5", "0", "-1", "-0", "+3", " 7 ", "1_0", "00", "5.0", "1.5", "1e3", "0x10"]
    numbers += ["abc", "", "nan", "inf", "-inf", "infinity", ".5", "1.", "\u0663", "2**3"]
    scalars: dict[Any, list[Any]] = {
        str: ["x", "", " a b ", "\u00e9", "-"],
        Path: [str(readable), str(unreadable), str(tmp_path), str(tmp_path / "no"), "", "-"],
        int: numbers,
        float: numbers,
        bool: [True, False],
    }
    if annotation in scalars:
        return scalars[annotation]
    (item,) = annotation.__args__
    return [tuple(scalars[item][:3]), (), [scalars[item][0]]]


def _outcome(runtime: Any, value: Any, param: Any) -> Any:
    try:
        result = runtime.coerce(value, param=param, ctx=None)
    except typer.BadParameter as exc:
        return ("error", exc.format_message())
    if isinstance(result, float) and math.isnan(result):
        return ("nan",)
    return (type(result), result)


def test_conversion_matches_typer_for_every_parameter(tmp_path: Path) -> None:
    command = typer.main.get_command(app)
    assert coercion.install(command) > 100
    checked = 0
    stack: list[Any] = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            converter = param._runtime_param
            assert isinstance(converter, coercion._Converter), param.name
            reference = build_runtime_param(param.type_descriptor)
            for value in [None, *_samples(param.type_descriptor.annotation, tmp_path)]:
                ours = _outcome(converter, value, param)
                assert ours == _outcome(reference, value, param), (param.name, value)
                checked += 1
    assert checked > 1000


def test_the_console_script_loads_with_the_collector_off_and_runs_with_it_on(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    """``strongroom.cli.entry``: no collection while the CLI and the vault's modules load,
    what they loaded frozen (once per process for the vault), and the collector on, with the
    CLI's thresholds, for the command itself (the agent and the server run for days)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    script = textwrap.dedent(
        f"""
        import gc, json, sys
        from strongroom.cli import options
        seen = {{}}
        opening = options.open_vault

        def spy(*args, **kwargs):
            seen.setdefault("enabled", gc.isenabled())
            seen.setdefault("threshold", gc.get_threshold())
            seen.setdefault("frozen_at_open", gc.get_freeze_count())
            vault = opening(*args, **kwargs)
            seen.setdefault("frozen_after_open", gc.get_freeze_count())
            options._freeze_loaded()
            seen["frozen_again"] = gc.get_freeze_count()
            return vault

        options.open_vault = spy
        sys.argv = ["strongroom", "backup", "files", {str(src)!r}, "--json"]
        import strongroom.cli.entry as entry
        seen["enabled_on_load"] = gc.isenabled()
        try:
            entry.run()
        except SystemExit as exc:
            seen["code"] = exc.code
        sys.stderr.write("\\n" + json.dumps(seen) + "\\n")
        """
    )
    # the entry module turns the collector off only once run() starts: prove it is on here
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **vault_env},
        check=False,
    )
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert seen["code"] == 0, proc.stderr
    assert seen["enabled_on_load"]  # importing the entry module changes nothing
    assert seen["enabled"] and seen["threshold"] == list(collector.THRESHOLD)
    assert 0 < seen["frozen_at_open"] < seen["frozen_after_open"]
    assert seen["frozen_again"] == seen["frozen_after_open"]  # once per process
