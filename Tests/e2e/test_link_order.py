"""The link puts the functions of Sources/sandboxd/symbol-order.txt first in the text (the idle-memory figure of
bench/RESULTS.md depends on it; Package.swift passes the file to lld)."""
from conftest import REPO, text_symbols


def listed_functions() -> list[str]:
    lines = (REPO / "Sources" / "sandboxd" / "symbol-order.txt").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_the_binary_starts_its_text_with_the_listed_functions(built_binary):
    listed = listed_functions()
    assert len(listed) > 1000, "symbol-order.txt lists too few functions: regenerate it (make symbol-order)"
    addresses = text_symbols(built_binary)
    # This project's own functions open the list. Followed, the link puts the first hundred of them within a few
    # hundred KiB of the start of the text (about 200 KiB here, debug or release); unordered, they lie where their
    # objects fall, several MiB in, after the packages' code.
    ours = [name for name in listed if name.startswith("$s14SandboxService") and name in addresses][:100]
    assert len(ours) >= 50, f"only {len(ours)} of the listed SandboxService functions are in {built_binary}"
    text_start = min(addresses.values())
    farthest = max(addresses[name] for name in ours) - text_start
    assert farthest < 1 << 20, (f"a listed function lies {farthest // 1024} KiB into the text: the link did not "
                                "follow symbol-order.txt (see Package.swift's linker settings)")
