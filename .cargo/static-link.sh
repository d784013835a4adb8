#!/bin/sh
# static-link.sh - cargo's rustc wrapper (.cargo/config.toml): links a program's glibc
# statically (static-pie) when its package asks for it, everything else as rustc would.
#
# Cargo runs `static-link.sh [WORKSPACE_WRAPPER] RUSTC ARGS...` with CARGO_MANIFEST_DIR set
# to the package being compiled. A package opts in with this line in its Cargo.toml:
#
#     [package.metadata.qmail]
#     link = "static"
#
# and the flag `-C target-feature=+crt-static` is then added to the compilation of its
# binaries only (`--crate-type bin`, not its build script and not its test harness).
# Libraries need no flag: the choice between static and dynamic glibc and libgcc is made
# when the final program is linked.
#
# Only programs that never consult NSS may opt in. A static glibc program that calls
# getpwnam/getpwuid/getgrnam/initgroups/getaddrinfo reads /etc/passwd itself, but for a
# name it does not find there it dlopen()s the next module of /etc/nsswitch.conf
# (libnss_systemd on Debian), and that crashes a static program (SIGSEGV, seen here on
# glibc 2.36). tests/tests/deps.rs checks which programs are static; bench/README.md
# ("Process start") gives the check that the release binaries link no NSS function.
# After changing the opt-in line, `touch` the program's main.rs: cargo does not know
# about this wrapper and will not relink by itself.
case " $* " in
*" --crate-type bin "*)
    case " $* " in
    *" --crate-name build_script_"*) ;;
    *)
        if [ -n "${CARGO_MANIFEST_DIR:-}" ] &&
            grep -qx 'link = "static"' "$CARGO_MANIFEST_DIR/Cargo.toml" 2>/dev/null; then
            exec "$@" -C target-feature=+crt-static
        fi
        ;;
    esac
    ;;
esac
exec "$@"
