# Helpers for the scripts in this folder and for .ci/run: `source` it, do not run it.

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages named that are not installed yet; nothing when all are.
apt_updated=""
need_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ -z "$apt_updated" ]; then
      as_root apt-get update -qq
      apt_updated=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The closing line of a test run: every `test result:` line of cargo's output in $1, added up.
test_summary() {
  # $1: the cargo test output; $2 (optional): the skip log the tests wrote (TEST_SKIP_LOG). A
  # skipped test ended early and cargo counts it passed; here it counts as skipped instead.
  local skipped=0
  if [ -n "${2:-}" ] && [ -s "$2" ]; then
    skipped=$(wc -l <"$2")
    printf '\nSkipped (their real part is missing):\n'
    sed 's/^/  /' "$2"
  fi
  awk -v s="$skipped" '/^test result: / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "\ntests: %d passed, %d failed, %d skipped\n", p - s, f, s }' "$1"
}
