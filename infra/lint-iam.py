#!/usr/bin/env python3
"""Least-privilege check of template.yaml's IAM statements (RELIABILITY.md, requirement 7).

cfn-lint and `sam validate` check that the template is well formed; they do not check that
its permissions are narrow. This script fails when:

* a function uses anything but inline policy statements (a SAM policy template such as
  `DynamoDBCrudPolicy`, or a managed policy, grants more than the code uses);
* a statement uses `NotAction`/`NotResource`, or lacks `Action` or `Resource`;
* an action is not one explicit `service:Operation` (no `*`, no `dynamodb:Get*`);
* a resource is `*`, or holds a wildcard that is not one of the few reviewed patterns in
  `WILDCARDS` (each with the reason it cannot be narrower), for that very principal;
* a principal can read a secret (`secretsmanager:GetSecretValue` and friends) that
  `SECRET_READERS` does not give it: every function reads only the secrets it needs, and no
  function can read another's.

Run `lint-iam.py [template.yaml]`; `lint-iam.py --self-test` proves each rule fires on a
template that breaks it. The test command runs both (infra/lint-template.sh).
"""

import re
import sys

import yaml

# --------------------------------------------------------------------------- policy


# Wildcard resources that were reviewed, by principal. A pattern matches the resource as
# written in the template (intrinsics rendered as `${Name}` / `${Name.Attr}`).
WILDCARDS = {
    # The table's global secondary indexes (GSI1..GSI3) are the table's own; naming each
    # would only have to be kept in step with the table definition.
    "*": [r"\$\{Table\.Arn\}/index/\*"],
    # Schedules live in one group per workspace, created at run time, so the group name is
    # only known by its stack prefix.
    "ApiFunction": [
        r"arn:\$\{AWS::Partition\}:scheduler:\$\{AWS::Region\}:\$\{AWS::AccountId\}:schedule/\$\{AWS::StackName\}-\*/\*",
        r"arn:\$\{AWS::Partition\}:scheduler:\$\{AWS::Region\}:\$\{AWS::AccountId\}:schedule-group/\$\{AWS::StackName\}-\*",
    ],
    "DispatchFunction": [
        r"arn:\$\{AWS::Partition\}:scheduler:\$\{AWS::Region\}:\$\{AWS::AccountId\}:schedule/\$\{AWS::StackName\}-\*/\*",
    ],
    # Connection secrets are created by workspace admins (`secretArn`); the service refuses
    # any whose name is not `scheduled-runs/<their workspace id>/…`, so one workspace cannot
    # name another's (services/connections.rs).
    "ExecuteFunction": [
        r"arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:scheduled-runs/\*",
    ],
    # SES authorises sending by identity; the sender is a parameter (an address or its
    # domain), so the identity is not known to the template.
    "NotifyFunction": [
        r"arn:\$\{AWS::Partition\}:ses:\$\{AWS::Region\}:\$\{AWS::AccountId\}:identity/\*",
    ],
}

SECRET_ACTIONS = {
    "secretsmanager:GetSecretValue",
    "secretsmanager:BatchGetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
}

# Which principal may touch which secrets (resources as rendered). The sealing key seals
# connection configurations and Slack webhooks (api) and unseals them to run queries
# (execute) and deliver notifications (notify); connection secrets are read by execute only.
SEALING_KEY = "${SealingKey}"
CONNECTION_SECRETS = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:scheduled-runs/*"
)
SECRET_READERS = {
    "ApiFunction": {SEALING_KEY},
    "ExecuteFunction": {SEALING_KEY, CONNECTION_SECRETS},
    "NotifyFunction": {SEALING_KEY},
}

ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
POLICY_RESOURCE_TYPES = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}


# --------------------------------------------------------------------------- loading


class Tagged:
    """A CloudFormation intrinsic (`!Ref`, `!GetAtt`, `!Sub`, …) as written."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value


def _intrinsic(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged(tag_suffix, value)


class Loader(yaml.SafeLoader):
    pass


Loader.add_multi_constructor("!", _intrinsic)


def render(value):
    """A resource as comparable text: `!Ref X` → `${X}`, `!GetAtt X.Arn` → `${X.Arn}`."""
    if isinstance(value, Tagged):
        if value.tag == "Ref":
            return "${%s}" % value.value
        if value.tag == "GetAtt":
            v = value.value
            return "${%s}" % (".".join(v) if isinstance(v, list) else v)
        if value.tag == "Sub":
            return value.value if isinstance(value.value, str) else value.value[0]
        return "!%s %r" % (value.tag, value.value)
    if isinstance(value, dict) and len(value) == 1:
        (key, v), = value.items()
        if key == "Ref":
            return "${%s}" % v
        if key == "Fn::GetAtt":
            return "${%s}" % (".".join(v) if isinstance(v, list) else v)
        if key == "Fn::Sub":
            return v if isinstance(v, str) else v[0]
    return str(value)


def as_list(value):
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- checks


def statements(template):
    """Every (principal, where, statement) of the template's identity policies, and the
    findings about policies that are not inline statements."""
    found, problems = [], []
    for name, resource in (template.get("Resources") or {}).items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            for i, policy in enumerate(as_list(props.get("Policies") or [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    for j, s in enumerate(as_list(policy["Statement"])):
                        found.append((name, f"Policies[{i}].Statement[{j}]", s))
                else:
                    problems.append(
                        f"{name}: Policies[{i}] is not an inline statement list "
                        f"({render(policy) if not isinstance(policy, dict) else list(policy)}); "
                        "name the exact actions and resources instead"
                    )
            if props.get("Role"):
                problems.append(f"{name}: uses an external Role; its policies cannot be checked")
        elif kind == "AWS::IAM::Role":
            if props.get("ManagedPolicyArns"):
                problems.append(f"{name}: ManagedPolicyArns grant unreviewed permissions")
            for i, policy in enumerate(props.get("Policies") or []):
                doc = policy.get("PolicyDocument") or {}
                for j, s in enumerate(as_list(doc.get("Statement") or [])):
                    found.append((name, f"Policies[{i}].Statement[{j}]", s))
        elif kind in POLICY_RESOURCE_TYPES:
            doc = props.get("PolicyDocument") or {}
            for j, s in enumerate(as_list(doc.get("Statement") or [])):
                found.append((name, f"Statement[{j}]", s))
    return found, problems


def check(template):
    found, problems = statements(template)
    if not found:
        problems.append("no IAM statements found: the check would prove nothing")
    for principal, where, s in found:
        at = f"{principal}: {where}"
        for key in ("NotAction", "NotResource", "NotPrincipal"):
            if key in s:
                problems.append(f"{at}: {key} grants everything else")
        actions = [render(a) for a in as_list(s.get("Action") or [])]
        resources = [render(r) for r in as_list(s.get("Resource") or [])]
        if not actions:
            problems.append(f"{at}: no Action")
        if not resources:
            problems.append(f"{at}: no Resource")
        for a in actions:
            if not ACTION.match(a):
                problems.append(f"{at}: action {a!r} is not one explicit service:Operation")
        allowed = WILDCARDS.get("*", []) + WILDCARDS.get(principal, [])
        for r in resources:
            if r.strip() == "*":
                problems.append(f"{at}: Resource '*'")
            elif "*" in r and not any(re.fullmatch(p, r) for p in allowed):
                problems.append(f"{at}: wildcard resource {r!r} is not a reviewed pattern")
        if s.get("Effect") == "Allow" and SECRET_ACTIONS.intersection(actions):
            readable = SECRET_READERS.get(principal, set())
            for r in resources:
                if r not in readable:
                    problems.append(f"{at}: may read secret {r!r}, which is not its own")
    return problems


# --------------------------------------------------------------------------- self-test

GOOD = """
Resources:
  SealingKey: {Type: AWS::SecretsManager::Secret}
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem]
              Resource: [!GetAtt Table.Arn, !Sub "${Table.Arn}/index/*"]
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Ref SealingKey
"""

# Each broken template, with the finding it must produce.
BAD = [
    ("Policies: [DynamoDBCrudPolicy: {TableName: !Ref Table}]", "not an inline statement"),
    ("Policies: [AmazonS3FullAccess]", "not an inline statement"),
    ("Policies: [{Statement: [{Effect: Allow, Action: 'dynamodb:*', Resource: x}]}]",
     "not one explicit"),
    ("Policies: [{Statement: [{Effect: Allow, Action: 'dynamodb:Get*', Resource: x}]}]",
     "not one explicit"),
    ("Policies: [{Statement: [{Effect: Allow, Action: 'sqs:SendMessage', Resource: '*'}]}]",
     "Resource '*'"),
    ("Policies: [{Statement: [{Effect: Allow, NotAction: 'iam:*', Resource: x}]}]", "NotAction"),
    ("Policies: [{Statement: [{Effect: Allow, Action: 'sqs:SendMessage'}]}]", "no Resource"),
    ("Policies: [{Statement: [{Effect: Allow, Action: 'sqs:SendMessage', "
     "Resource: !Sub 'arn:aws:sqs:*:*:q'}]}]", "not a reviewed pattern"),
    # Another function's allowance does not carry over.
    ("Policies: [{Statement: [{Effect: Allow, Action: 'ses:SendEmail', Resource: !Sub "
     "'arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*'}]}]",
     "not a reviewed pattern"),
    # The API function must not read connection secrets (execute's), even by exact name.
    ("Policies: [{Statement: [{Effect: Allow, Action: 'secretsmanager:GetSecretValue', "
     "Resource: !Sub 'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"
     "secret:scheduled-runs/*'}]}]", "not its own"),
    ("Policies: [{Statement: [{Effect: Allow, Action: 'secretsmanager:GetSecretValue', "
     "Resource: !Ref OtherSecret}]}]", "not its own"),
]


def self_test():
    failures = []
    good = check(yaml.load(GOOD, Loader=Loader))
    if good:
        failures.append(f"a narrow template was refused: {good}")
    for policies, expected in BAD:
        template = yaml.load(
            "Resources:\n  ApiFunction:\n    Type: AWS::Serverless::Function\n"
            f"    Properties:\n      {policies}\n",
            Loader=Loader,
        )
        problems = check(template)
        if not any(expected in p for p in problems):
            failures.append(f"{policies}: expected a finding with {expected!r}, got {problems}")
    role = yaml.load(
        "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n"
        "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n",
        Loader=Loader,
    )
    if not any("ManagedPolicyArns" in p for p in check(role)):
        failures.append("a role with managed policies was accepted")
    for f in failures:
        print(f"self-test: {f}", file=sys.stderr)
    print(f"lint-iam self-test: {len(BAD) + 2 - len(failures)}/{len(BAD) + 2} cases behave")
    return not failures


def main(argv):
    if argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    path = argv[1] if len(argv) > 1 else "template.yaml"
    with open(path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=Loader)
    problems = check(template)
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    if problems:
        return 1
    found, _ = statements(template)
    print(f"lint-iam: {len(found)} IAM statements, explicit actions, reviewed resources, "
          "secrets readable only by their functions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
