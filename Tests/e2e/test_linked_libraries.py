"""sandboxd carries libmicrohttpd in its binary (Debian's static archive) and loads no TLS library: the shared
libmicrohttpd would bring GnuTLS and eight libraries beneath it into every server for HTTPS it never serves (2.4 MB
of an idle server's memory; Sources/CSandboxd/without_tls.c, README "Decisions")."""
import subprocess

from conftest import text_symbols

# GnuTLS and what it loads, as Debian's libmicrohttpd12 brings them.
TLS_LIBRARIES = ("libgnutls", "libnettle", "libhogweed", "libgmp", "libp11-kit", "libtasn1", "libidn2", "libunistring")


def loaded_libraries(binary) -> list[str]:
    """What the loader maps for the binary, directly or beneath another library (ldd's first column)."""
    listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def test_the_binary_loads_no_libmicrohttpd_and_no_tls_library(built_binary):
    loaded = loaded_libraries(built_binary)
    assert any(name.startswith("libc.so") for name in loaded), loaded
    unwanted = [name for name in loaded if "microhttpd" in name or name.startswith(TLS_LIBRARIES)]
    assert not unwanted, f"sandboxd loads {unwanted}"
    assert "MHD_start_daemon" in text_symbols(built_binary), "libmicrohttpd is not linked into the binary"
