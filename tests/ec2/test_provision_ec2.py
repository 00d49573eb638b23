"""playbooks/provision-ec2.yml and teardown-ec2.yml against an AWS API emulator.

Real parts: `ansible-playbook` with the real amazon.aws modules, against a real `moto_server` process on a free
loopback port, seeded with Debian-like AMIs (debian-amis.json); the results are read back through boto3 from the
same server. What cannot be tested here: a real boot on AWS (cloud-init, SSH), so livelog_ec2_wait_for_ssh=false.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AMIS = Path(__file__).with_name("debian-amis.json")
REGION = "eu-west-1"
ADMIN_CIDR = "198.51.100.7/32"
# The newest image named debian-12-amd64-* owned by Debian's account; newer arm64, backports, Debian 13 and
# impostor images in debian-amis.json must all lose to it.
NEWEST_DEBIAN_12 = "ami-0d1e0b12000000002"
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # nothing listens: any AWS call would fail with a connection error


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, "MOTO_AMIS_PATH": str(AMIS)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 (loopback, our server)
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start on {url}:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def aws_env(tmp: Path, credentials: bool = True) -> dict[str, str]:
    """The environment of a run: test credentials (or none), and no profile or config of the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        ANSIBLE_FORCE_COLOR="0",
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # noqa: S106 (moto takes any)
    return env


def playbook(name: str, extra: dict[str, Any], tmp: Path, credentials: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ansible-playbook"), f"playbooks/{name}", "-e", json.dumps(extra)],
        cwd=REPO,
        env=aws_env(tmp, credentials),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def output(run: subprocess.CompletedProcess) -> str:
    return run.stdout + run.stderr


def recap(run: subprocess.CompletedProcess) -> dict[str, int]:
    found = re.search(r"^localhost\s+:\s+(.*)$", run.stdout, re.MULTILINE)
    assert found, f"no PLAY RECAP for localhost:\n{output(run)[-4000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", found.group(1))}


def succeeded(run: subprocess.CompletedProcess) -> dict[str, int]:
    assert run.returncode == 0, output(run)[-6000:]
    counts = recap(run)
    assert counts["failed"] == 0 and counts["unreachable"] == 0, counts
    return counts


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    """An operator's key pair, id and id.pub (made with cryptography, which Ansible brings: no ssh-keygen needed)."""
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "id"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    private.chmod(0o600)
    public = tmp_path / "id.pub"
    public.write_bytes(key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH) + b" ec2-test\n")
    return public


@pytest.fixture
def ec2(moto: str) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=moto,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto takes any)
    )


def tagged(deployment: str) -> list[dict[str, str | list[str]]]:
    return [{"Name": "tag:livelog:deployment", "Values": [deployment]}]


def live_instances(ec2: Any, deployment: str) -> list[dict]:
    filters = [*tagged(deployment), {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def ingress(group: dict) -> set[tuple]:
    """A group's inbound rules as (protocol, from, to, source) with the source a CIDR or a group id."""
    rules = set()
    for perm in group["IpPermissions"]:
        port = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        rules |= {(*port, r["CidrIp"]) for r in perm.get("IpRanges", [])}
        rules |= {(*port, r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", [])}
        rules |= {(*port, p["GroupId"]) for p in perm.get("UserIdGroupPairs", [])}
    return rules


def unsafe(value: Any) -> Any:
    """ansible-inventory --list wraps strings from the cloud as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict):
        return value.get("__ansible_unsafe", {k: unsafe(v) for k, v in value.items()})
    if isinstance(value, list):
        return [unsafe(v) for v in value]
    return value


def inventory(source: Path, tmp: Path) -> dict:
    listed = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(source), "--list"],
        cwd=REPO, env=aws_env(tmp), capture_output=True, text=True, timeout=120, check=True,
    )
    return unsafe(json.loads(listed.stdout))


def test_cluster_provision_is_idempotent_and_teardown_removes_only_its_own(moto: str, ec2: Any, ssh_key: Path,
                                                                            tmp_path: Path) -> None:
    # Bystanders in the same account and VPC, made outside the playbooks: teardown must leave them alone.
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    other_group = ec2.create_security_group(GroupName="lltest-web-by-hand", Description="not ours", VpcId=vpc,
                                            TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                                                {"Key": "livelog:deployment", "Value": "someone-else"}]}])["GroupId"]
    ec2.create_key_pair(KeyName="someone-else")
    bystander = ec2.run_instances(ImageId=NEWEST_DEBIAN_12, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"][0]["InstanceId"]

    inventory_file = tmp_path / "lltest.ini"
    extra = {
        "livelog_ec2_region": REGION, "livelog_ec2_endpoint_url": moto, "livelog_ec2_deployment": "lltest",
        "livelog_ec2_layout": "cluster", "livelog_ec2_cluster_nodes": 2, "livelog_ec2_elastic_ip": True,
        "livelog_ec2_admin_cidr": ADMIN_CIDR, "livelog_ec2_public_key_file": str(ssh_key),
        "livelog_ec2_tags": {"owner": "ci"}, "livelog_ec2_wait_for_ssh": False,
        "livelog_ec2_inventory_file": str(inventory_file),
    }
    first = succeeded(playbook("provision-ec2.yml", extra, tmp_path))
    assert first["changed"] > 0

    # --- the instances: one per host of the layout, tagged, IMDSv2, encrypted root, the newest Debian AMI ---------
    instances = {tags(i)["Name"]: i for i in live_instances(ec2, "lltest")}
    assert set(instances) == {"lltest-lb", "lltest-node1", "lltest-node2"}
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups(Filters=tagged("lltest"))["SecurityGroups"]}
    assert set(groups) == {"lltest-hosts", "lltest-web"}
    hosts_id, web_id = groups["lltest-hosts"]["GroupId"], groups["lltest-web"]["GroupId"]
    components = {"lltest-lb": "api,nginx,redis", "lltest-node1": "socketio", "lltest-node2": "socketio"}
    for name, instance in instances.items():
        assert tags(instance) == {
            "Name": name, "livelog:deployment": "lltest", "livelog:layout": "cluster", "livelog:host": name,
            "livelog:components": components[name], "owner": "ci",
        }
        assert instance["ImageId"] == NEWEST_DEBIAN_12
        assert instance["InstanceType"] == "t3.small"
        assert instance["KeyName"] == "lltest"
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        attached = {g["GroupId"] for g in instance["SecurityGroups"]}
        assert attached == ({hosts_id, web_id} if name == "lltest-lb" else {hosts_id}), name
        root = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]]
        assert len(root) == 1, instance["BlockDeviceMappings"]
        volume = ec2.describe_volumes(VolumeIds=[root[0]["Ebs"]["VolumeId"]])["Volumes"][0]
        assert volume["Encrypted"] is True
        assert volume["Size"] == 10
        assert volume["VolumeType"] == "gp3"
        user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
        cloud_config = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert cloud_config.startswith("#cloud-config\n")
        config = yaml.safe_load(cloud_config)
        assert config["hostname"] == name and "python3" in config["packages"] and config["ssh_pwauth"] is False

    # --- the security groups: exactly these rules, nothing else open --------------------------------------------
    assert ingress(groups["lltest-hosts"]) == {
        ("tcp", 22, 22, ADMIN_CIDR), ("tcp", 7000, 7000, hosts_id), ("tcp", 6379, 6379, hosts_id),
    }
    assert ingress(groups["lltest-web"]) == {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")}

    # --- the key pair and the Elastic IP of the host that runs nginx ----------------------------------------------
    keys = ec2.describe_key_pairs(KeyNames=["lltest"])["KeyPairs"]
    assert len(keys) == 1 and tags(keys[0])["livelog:deployment"] == "lltest"
    addresses = ec2.describe_addresses(Filters=tagged("lltest"))["Addresses"]
    assert [a["InstanceId"] for a in addresses] == [instances["lltest-lb"]["InstanceId"]]
    eip = addresses[0]["PublicIp"]

    # --- the rendered inventory, read by Ansible itself ----------------------------------------------------------
    assert inventory_file.stat().st_mode & 0o777 == 0o600
    rendered = inventory(inventory_file, tmp_path)
    assert sorted(rendered["livelog"]["hosts"]) == sorted(instances)
    for name, instance in instances.items():
        host = rendered["_meta"]["hostvars"][name]
        assert host["livelog_components"] == components[name].split(",")
        assert host["livelog_private_address"] == instance["PrivateIpAddress"]
        assert host["ansible_user"] == "admin"
        assert host["ansible_ssh_private_key_file"] == str(ssh_key.with_suffix(""))
    assert rendered["_meta"]["hostvars"]["lltest-lb"]["ansible_host"] == eip

    # --- the dynamic inventory example, pointed at the emulator ----------------------------------------------------
    example = (REPO / "inventory.example.aws_ec2.yml").read_text()
    dynamic = tmp_path / "lltest.aws_ec2.yml"
    dynamic.write_text(
        example.replace("tag:livelog:deployment: livelog", "tag:livelog:deployment: lltest")
        .replace("  - eu-west-1", f"  - {REGION}\nendpoint_url: {moto}")
    )
    found = inventory(dynamic, tmp_path)
    assert sorted(found["livelog"]["hosts"]) == sorted(instances)
    assert sorted(found["livelog_socketio"]["hosts"]) == ["lltest-node1", "lltest-node2"]
    for name in instances:
        assert found["_meta"]["hostvars"][name]["livelog_components"] == components[name].split(",")

    # --- a second run changes nothing and creates no second instance ---------------------------------------------
    second = playbook("provision-ec2.yml", extra, tmp_path)
    assert succeeded(second)["changed"] == 0, output(second)[-6000:]
    assert {i["InstanceId"] for i in live_instances(ec2, "lltest")} == {i["InstanceId"] for i in instances.values()}

    # --- teardown: everything tagged lltest goes, nothing else ---------------------------------------------------
    torn = playbook("teardown-ec2.yml", extra, tmp_path)
    succeeded(torn)
    assert "Left allocated" not in output(torn), "its own, tagged, address is released, not named"
    assert live_instances(ec2, "lltest") == []
    assert ec2.describe_security_groups(Filters=tagged("lltest"))["SecurityGroups"] == []
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"].startswith("lltest")] == ["lltest-web-by-hand"]
    assert "lltest" not in {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert ec2.describe_addresses(Filters=tagged("lltest"))["Addresses"] == []
    assert eip not in {a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]}
    assert not inventory_file.exists()
    assert ec2.describe_security_groups(GroupIds=[other_group])["SecurityGroups"]
    assert ec2.describe_key_pairs(KeyNames=["someone-else"])["KeyPairs"]
    state = ec2.describe_instances(InstanceIds=[bystander])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"

    again = succeeded(playbook("teardown-ec2.yml", extra, tmp_path))
    assert again["changed"] == 0


def test_teardown_names_an_attached_address_it_cannot_tell_is_its_own(moto: str, ec2: Any, ssh_key: Path,
                                                                         tmp_path: Path) -> None:
    """A provisioning run stopped between allocating the Elastic IP and tagging it leaves an untagged address on
    the instance: teardown leaves it allocated (it might be the operator's own) and says how to release it."""
    extra = {
        "livelog_ec2_region": REGION, "livelog_ec2_endpoint_url": moto, "livelog_ec2_deployment": "lluntag",
        "livelog_ec2_layout": "single", "livelog_ec2_elastic_ip": True, "livelog_ec2_admin_cidr": ADMIN_CIDR,
        "livelog_ec2_public_key_file": str(ssh_key), "livelog_ec2_wait_for_ssh": False,
        "livelog_ec2_inventory_file": str(tmp_path / "lluntag.ini"),
    }
    succeeded(playbook("provision-ec2.yml", extra, tmp_path))
    [address] = ec2.describe_addresses(Filters=tagged("lluntag"))["Addresses"]
    ec2.delete_tags(Resources=[address["AllocationId"]], Tags=[{"Key": k} for k in tags(address)])
    try:
        # provisioning again finds the address on the instance (no second one) and tags it
        succeeded(playbook("provision-ec2.yml", extra, tmp_path))
        assert [a["AllocationId"] for a in ec2.describe_addresses(Filters=tagged("lluntag"))["Addresses"]] == [
            address["AllocationId"]
        ]
        ec2.delete_tags(Resources=[address["AllocationId"]], Tags=[{"Key": k} for k in tags(address)])
        torn = playbook("teardown-ec2.yml", extra, tmp_path)
        succeeded(torn)
        assert live_instances(ec2, "lluntag") == []
        assert f"Left allocated: Elastic IP {address['PublicIp']} ({address['AllocationId']})" in output(torn)
        assert f"--allocation-id {address['AllocationId']}" in output(torn)
        # still allocated: the operator's to release (moto keeps the association of a terminated instance)
        assert ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"]
    finally:
        ec2.release_address(AllocationId=address["AllocationId"])


@pytest.mark.parametrize(
    ("layout", "names", "private_ports", "own_subnet"),
    [("single", {"llone-1"}, set(), False), ("split", {"llone-api", "llone-edge"}, {7000, 8000}, True)],
)
def test_layout_opens_only_its_ports(moto: str, ec2: Any, ssh_key: Path, tmp_path: Path, layout: str,
                                     names: set[str], private_ports: set[int], own_subnet: bool) -> None:
    extra = {
        "livelog_ec2_region": REGION, "livelog_ec2_endpoint_url": moto, "livelog_ec2_deployment": "llone",
        "livelog_ec2_layout": layout, "livelog_ec2_admin_cidr": ADMIN_CIDR,
        "livelog_ec2_public_key_file": str(ssh_key), "livelog_ec2_wait_for_ssh": False,
        "livelog_ec2_inventory_file": str(tmp_path / "llone.ini"),
    }
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    if own_subnet:  # a VPC and subnet of the operator's, not the default ones
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        extra["livelog_ec2_subnet_id"] = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    try:
        succeeded(playbook("provision-ec2.yml", extra, tmp_path))
        assert {tags(i)["Name"] for i in live_instances(ec2, "llone")} == names
        groups = {g["GroupName"]: g for g in ec2.describe_security_groups(Filters=tagged("llone"))["SecurityGroups"]}
        hosts_id = groups["llone-hosts"]["GroupId"]
        assert ingress(groups["llone-hosts"]) == {("tcp", 22, 22, ADMIN_CIDR)} | {
            ("tcp", port, port, hosts_id) for port in private_ports
        }
        assert ingress(groups["llone-web"]) == {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")}
        assert ec2.describe_addresses(Filters=tagged("llone"))["Addresses"] == []  # no Elastic IP unless asked
        assert {g["VpcId"] for g in groups.values()} == {vpc}
        if own_subnet:
            assert {i["SubnetId"] for i in live_instances(ec2, "llone")} == {extra["livelog_ec2_subnet_id"]}
        if layout == "single":
            # another layout over a running deployment is refused before anything is launched
            changed = playbook("provision-ec2.yml", {**extra, "livelog_ec2_layout": "split"}, tmp_path)
            assert changed.returncode != 0
            assert "livelog_ec2_layout: deployment llone already runs ['llone-1']" in output(changed)
            assert {tags(i)["Name"] for i in live_instances(ec2, "llone")} == names
            refetched = ec2.describe_security_groups(GroupIds=[hosts_id])["SecurityGroups"][0]
            assert ingress(refetched) == {("tcp", 22, 22, ADMIN_CIDR)}  # no split ports opened either
    finally:
        succeeded(playbook("teardown-ec2.yml", extra, tmp_path))
    assert live_instances(ec2, "llone") == []


GOOD = {
    "livelog_ec2_region": REGION, "livelog_ec2_endpoint_url": CLOSED_ENDPOINT, "livelog_ec2_admin_cidr": ADMIN_CIDR,
    "livelog_ec2_wait_for_ssh": False,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"livelog_ec2_admin_cidr": "0.0.0.0/0"}, "livelog_ec2_admin_cidr: 0.0.0.0/0 opens SSH to a large part"),
        ({"livelog_ec2_admin_cidr": "198.51.100.7"}, "livelog_ec2_admin_cidr: '198.51.100.7' is not an IPv4 CIDR"),
        ({"livelog_ec2_instance_type": "t3-small"}, "livelog_ec2_instance_type: 't3-small' is not an instance type"),
        ({"livelog_ec2_region": None}, "missing required arguments: livelog_ec2_region"),
        ({"livelog_ec2_region": "Europe"}, "livelog_ec2_region: 'Europe' is not an AWS region name"),
        ({"livelog_ec2_layout": "huge"}, "livelog_ec2_layout"),
        ({"livelog_ec2_tags": {"livelog:deployment": "x"}}, "livelog_ec2_tags:"),
        ({"private_key": True}, "livelog_ec2_public_key_file: "),
    ],
    ids=["world-ssh", "cidr-format", "instance-type", "no-region", "region-format", "layout", "tags", "private-key"],
)
def test_bad_input_fails_before_any_aws_call(ssh_key: Path, tmp_path: Path, change: dict, message: str) -> None:
    extra = {**GOOD, "livelog_ec2_public_key_file": str(ssh_key), **change}
    if extra.pop("private_key", False):
        extra["livelog_ec2_public_key_file"] = str(ssh_key.with_suffix(""))
    extra = {k: v for k, v in extra.items() if v is not None}
    run = playbook("provision-ec2.yml", extra, tmp_path)
    assert run.returncode != 0
    assert message in output(run), output(run)[-3000:]
    # The endpoint is a closed port: had any AWS call been made, the run would have failed on it instead.
    assert "Ask AWS who these credentials belong to" not in output(run)
    secret = ssh_key.with_suffix("").read_text().splitlines()[1]
    assert secret not in output(run)  # a private key given by mistake is never printed
    assert recap(run)["failed"] == 1


def test_wide_ssh_is_allowed_when_asked(ssh_key: Path, tmp_path: Path) -> None:
    extra = {**GOOD, "livelog_ec2_public_key_file": str(ssh_key), "livelog_ec2_admin_cidr": "0.0.0.0/0",
             "livelog_ec2_allow_wide_ssh": True}
    run = playbook("provision-ec2.yml", extra, tmp_path)
    # past validation, the first AWS call meets the closed endpoint: one line saying so, no traceback
    assert run.returncode != 0
    assert "TASK [livelog_ec2 : Ask AWS who these credentials belong to]" in run.stdout
    assert f"AWS API: cannot reach {CLOSED_ENDPOINT} (livelog_ec2_endpoint_url" in output(run), output(run)[-3000:]
    assert "Traceback" not in output(run)


def test_missing_credentials_give_one_clear_line(moto: str, ssh_key: Path, tmp_path: Path) -> None:
    extra = {**GOOD, "livelog_ec2_endpoint_url": moto, "livelog_ec2_public_key_file": str(ssh_key)}
    run = playbook("provision-ec2.yml", extra, tmp_path, credentials=False)
    assert run.returncode != 0
    text = output(run)
    assert "AWS credentials: none found (region eu-west-1); set AWS_PROFILE, or AWS_ACCESS_KEY_ID" in text, text
    assert "Traceback" not in text and "botocore" not in text and "NoCredentialsError" not in text
    assert recap(run)["failed"] == 1
