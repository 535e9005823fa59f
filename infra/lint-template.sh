#!/usr/bin/env bash
# Lints template.yaml offline with cfn-lint and `sam validate --lint`. Both come from PyPI
# into their own venv (.test-env/sam-venv, gitignored): aws-sam-cli pins its own boto
# versions, so it stays apart from the emulators' venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.test-env/sam-venv"
REQUIREMENTS=("cfn-lint==1.58.0" "aws-sam-cli==1.170.0")

if [ ! -x "$VENV/bin/sam" ] || [ ! -x "$VENV/bin/cfn-lint" ]; then
    mkdir -p "$ROOT/.test-env"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" </dev/null
fi

export SAM_CLI_TELEMETRY=0
"$VENV/bin/cfn-lint" "$ROOT/template.yaml"
# sam reads credentials only to tell the user about them; validation itself is offline.
AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-lint}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-lint}" \
    "$VENV/bin/sam" validate --lint --template "$ROOT/template.yaml" --region us-east-1 </dev/null

# Least privilege: explicit actions, reviewed resources, each secret readable only by the
# functions that need it (infra/lint-iam.py; PyYAML comes with cfn-lint). The self-test
# first proves every rule still fires on a template that breaks it.
"$VENV/bin/python" "$ROOT/infra/lint-iam.py" --self-test
"$VENV/bin/python" "$ROOT/infra/lint-iam.py" "$ROOT/template.yaml"
