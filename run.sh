#!/usr/bin/env bash
# Fila's two entry points, from a fresh Debian machine (root) or a developer's checkout:
#   ./run.sh demo   set up what is missing, then run the main job (services, control plane,
#                   workers, receiver, 500-instance simulator, TUI); --headless for no terminal
#   ./run.sh test   set up what is missing, then the quality gates and the whole test suite
# Both are idempotent and quick on a second run.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
have_python() { command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; }
have_python || need_apt+=(python3 python3-venv python3-pip python3-dev)
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
[ -x /usr/bin/redis-sentinel ] || need_apt+=(redis-sentinel)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v strace >/dev/null || need_apt+=(strace)
command -v gcc >/dev/null || need_apt+=(build-essential)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need_apt[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The packages' own init scripts may have started system copies; Fila runs its own.
  for svc in rabbitmq-server redis-server redis-sentinel postgresql; do
    service "$svc" stop >/dev/null 2>&1 || true
  done
  # The package's RabbitMQ leaves its epmd on 0.0.0.0:4369; Fila's own listens on loopback.
  command -v epmd >/dev/null && epmd -kill >/dev/null 2>&1 || true
fi

stamp=.venv/.fila-installed
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing Python dependencies into .venv…"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,local]'
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

cmd="${1:-demo}"
shift || true
case "$cmd" in
  demo)
    exec fila demo "$@"
    ;;
  test)
    fila services up >/dev/null
    echo "== ruff check"; ruff check .
    echo "== ruff format --check"; ruff format --check .
    echo "== mypy --strict"; mypy --strict fila controlplane workers tui simulator
    echo "== pytest"
    set +e
    pytest "$@"
    rc=$?
    set -e
    # 5 = no test collected: that is a failure for this project, not a pass.
    exit "$rc"
    ;;
  *)
    echo "usage: ./run.sh demo [--headless] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
