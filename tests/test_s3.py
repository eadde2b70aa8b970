"""S3 everywhere a path goes, against a real S3-compatible server (`moto_server`) on 127.0.0.1.

The server runs with IAM authentication on: the fixture creates a user and an access key in it,
so requests are signed and checked, and wrong credentials are refused as AWS would refuse them.
Every process of a run (driver, coordinator, Train workers, Data tasks) finds those credentials
in its environment, as on a real cluster; raygrow itself only knows the endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from cluster_procs import moto_server
from raygrow.config import S3Config
from raygrow import storage

IAM_BOOTSTRAP_ACTIONS = 3  # create_user, put_user_policy, create_access_key: unauthenticated
CORPUS_FILES = 40
CORPUS_FILE_BYTES = 4000


@dataclass
class S3Server:
    endpoint: str
    key_id: str
    secret: str
    client: object  # a boto3 S3 client with the test user's credentials

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3():
    """A moto_server subprocess with IAM auth, an IAM user allowed everything, and that user's
    credentials in this process's environment (restored afterwards)."""
    import boto3

    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(IAM_BOOTSTRAP_ACTIONS)}
    with moto_server(env) as endpoint:
        try:
            bootstrap = {"endpoint_url": endpoint, "region_name": "us-east-1",
                         "aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
            iam = boto3.client("iam", **bootstrap)
            iam.create_user(UserName="raygrow")
            everything = {"Version": "2012-10-17",
                          "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            iam.put_user_policy(UserName="raygrow", PolicyName="everything",
                                PolicyDocument=json.dumps(everything))
            key = iam.create_access_key(UserName="raygrow")["AccessKey"]
            with pytest.MonkeyPatch.context() as patch:
                for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                             "AWS_ENDPOINT_URL_S3"):
                    patch.delenv(name, raising=False)
                patch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
                patch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
                patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
                # no instance role to look for here, nor profiles of the machine
                patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
                patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
                patch.setenv("AWS_CONFIG_FILE", os.devnull)
                client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
                for bucket in ("corpus", "runs"):
                    client.create_bucket(Bucket=bucket)
                yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], client)
        finally:
            storage.configure_s3()


@pytest.fixture(scope="module")
def corpus(s3) -> list[bytes]:
    """Real text on S3: the start of CORPUS_FILES standard-library sources, as .txt documents."""
    import sysconfig

    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:CORPUS_FILES]
    texts = [path.read_bytes()[:CORPUS_FILE_BYTES] for path in sources]
    for index, text in enumerate(texts):
        s3.client.put_object(Bucket="corpus", Key=f"text/doc-{index:03d}.txt", Body=text)
    return texts


@pytest.fixture(scope="module")
def s3_ray(s3, ray_local):
    """The session's Ray cluster, restarted if its processes were started before the test
    credentials were in the environment (workers inherit the environment at start-up)."""
    @ray_local.remote(num_cpus=0)
    def worker_key_id() -> str | None:
        return os.environ.get("AWS_ACCESS_KEY_ID")

    if ray_local.get(worker_key_id.remote()) != s3.key_id:
        ray_local.shutdown()
        ray_local.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    return ray_local


def s3_config(tiny_config, s3: S3Server, name: str, **sections):
    """tiny_config with its storage, corpus and packed shards on S3 and the moto endpoint set."""
    data = {"source": "s3://corpus/text", "cache_dir": "s3://runs/datasets", "max_documents": None,
            **sections.pop("data", {})}
    config = tiny_config(name, storage="s3://runs/runs", data=data, **sections)
    return replace(config, s3=S3Config(endpoint_url=s3.endpoint))


# ---- refusals: before any cluster work, one line, nothing written --------------------------


PLAN = {"name": "refused", "data": {"source": "stdlib", "seq_len": 32, "max_documents": 5},
        "model": {"layers": 1, "hidden": 32, "heads": 4},
        "train": {"tokens": 4096, "batch_tokens": 512, "micro_batch": 4}}


SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token-never-printed"
REFUSALS = {
    # case: (overrides, environment changes, fragments of the one error line, through the CLI?)
    "missing bucket": (["storage=s3://no-such-bucket/runs"], {},
                       ["storage: s3://no-such-bucket/runs/refused",
                        "bucket no-such-bucket does not exist"], True),
    "wrong secret": (["storage=s3://runs/refusals"],
                     {"AWS_SECRET_ACCESS_KEY": "wrong-secret-never-printed"},
                     ["storage:", "refused the AWS credentials (SignatureDoesNotMatch)",
                      "AWS_SECRET_ACCESS_KEY"], True),
    "no credentials": (["storage=s3://runs/refusals"],
                       {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
                       ["storage:", "no AWS credentials found", "AWS_PROFILE"], True),
    "unreachable endpoint setting": (["storage=s3://runs/refusals",
                                      "s3.endpoint_url=http://127.0.0.1:9"], {},
                                     ["storage:", "cannot connect to endpoint http://127.0.0.1:9 "
                                                  "(s3.endpoint_url"],
                                     True),
    "missing source bucket": (["storage=s3://runs/refusals", "data.source=s3://gone/corpus"], {},
                              ["data.source: s3://gone/corpus", "bucket gone does not exist"],
                              False),
    "unknown key and token": (["storage=s3://runs/refusals"],
                              {"AWS_ACCESS_KEY_ID": "AKIANEVERPRINTED0000",
                               "AWS_SESSION_TOKEN": SESSION_TOKEN},
                              ["storage:", "refused the AWS credentials"], False),
    "unreachable endpoint env": (["storage=s3://runs/refusals"],
                                 {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
                                 ["cannot connect to endpoint http://127.0.0.1:9",
                                  "AWS_ENDPOINT_URL"], False),
    "bad endpoint setting": (["storage=s3://runs/refusals", "s3.endpoint_url=127.0.0.1:9"], {},
                             ["s3.endpoint_url: must be an http:// or https:// URL"], False),
    "other scheme": (["storage=gs://bucket/runs"], {},
                     ["gs:// paths are not supported", "s3://bucket/prefix"], False),
}
NEVER_SHOWN = ("wrong-secret-never-printed", "AKIANEVERPRINTED0000", SESSION_TOKEN)


def refusal_line(tmp_path: Path, overrides: list[str], env: dict[str, str],
                 through_cli: bool) -> str:
    """The error a refused `raygrow train` prints: from the command itself (exit status 2, one
    line on stderr), or, to keep the test fast, from the driver's checks in this process."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    if not through_cli:
        from raygrow.config import load_config
        from raygrow.driver import check
        from raygrow.errors import RaygrowError

        with pytest.MonkeyPatch.context() as patch:
            for name in set(os.environ) | set(env):
                patch.setenv(name, env[name]) if name in env else patch.delenv(name)
            with pytest.raises(RaygrowError) as refused:
                check(load_config(plan, overrides))
        return f"raygrow: error: {refused.value}"
    args = [arg for override in overrides for arg in ("--set", override)]
    result = subprocess.run([sys.executable, "-m", "raygrow.cli", "train", str(plan), *args],
                            cwd=tmp_path,
                            env={**env, "RAY_ADDRESS": ""}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return result.stderr


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_bad_bucket_credentials_or_endpoint_are_refused_before_any_work(s3, tmp_path, caplog, case):
    overrides, changes, fragments, through_cli = REFUSALS[case]
    env = {**os.environ, "AWS_ENDPOINT_URL": s3.endpoint}
    for name, value in changes.items():
        env.pop(name) if value is None else env.__setitem__(name, value)
    before = s3.keys("runs")
    started = time.monotonic()
    output = refusal_line(tmp_path, overrides, env, through_cli)
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("raygrow: error: "), output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert time.monotonic() - started < 60
    assert s3.keys("runs") == before  # nothing written
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plan.yaml"]
    for secret in (s3.secret, s3.key_id, *NEVER_SHOWN):
        assert secret not in output and secret not in caplog.text


# ---- prepare, train, resume, export on S3 --------------------------------------------------


@pytest.fixture(scope="module")
def prepared(s3_ray, s3, corpus, tiny_config):
    from raygrow.data import dataset_dir, prepare

    config = s3_config(tiny_config, s3, "prepare")
    storage.configure_s3(config.s3.endpoint_url)
    manifest = prepare(config, show_progress=False)
    return config, manifest, dataset_dir(config)


@pytest.mark.ray
def test_prepare_reads_the_corpus_from_s3_and_writes_shards_to_s3(s3, corpus, prepared,
                                                                  tiny_config, tmp_path):
    from raygrow.data import Manifest, PackedRows, dataset_dir, prepare

    config, manifest, directory = prepared
    assert directory.startswith("s3://runs/datasets/text-byte-32-")
    keys = s3.keys("runs")
    prefix = directory[len("s3://runs/"):]
    assert f"{prefix}/manifest.json" in keys
    assert all(f"{prefix}/{name}" in keys for name in manifest.train_shards + manifest.val_shards)
    assert manifest.documents == len(corpus) and manifest.source == "s3://corpus/text"
    # The same documents prepared from a local directory give the same rows.
    local_corpus = tmp_path / "text"
    local_corpus.mkdir()
    for index, text in enumerate(corpus):
        (local_corpus / f"doc-{index:03d}.txt").write_bytes(text)
    local = tiny_config("prepare-local", data={"source": str(local_corpus), "max_documents": None,
                                               "cache_dir": str(tmp_path / "datasets")})
    local_manifest = prepare(local, show_progress=False)
    assert ((local_manifest.train_rows, local_manifest.val_rows)
            == (manifest.train_rows, manifest.val_rows))
    s3_rows = PackedRows(directory, "train", None).take(0, manifest.train_rows)[1]
    local_rows = PackedRows(dataset_dir(local), "train", None).take(0, manifest.train_rows)[1]
    assert (s3_rows == local_rows).all()
    assert Manifest.load(directory) == manifest
    assert prepare(config, show_progress=False) == manifest  # reused, not prepared again


def growth_plan(tiny_config, s3: S3Server, name: str, **train):
    shape = {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
    stages = [{"shape": shape, "tokens": 4 * 512},
              {"shape": {**shape, "layers": 4}, "tokens": 4 * 512, "growth": {"depth_op": "stack"}}]
    return s3_config(tiny_config, s3, name, model=None, stages=stages,
                     train={"deterministic": False, "val_every": 2, **train})


def objects_text(s3: S3Server, prefix: str) -> bytes:
    return b"".join(s3.client.get_object(Bucket="runs", Key=key)["Body"].read()
                    for key in s3.keys("runs") if key.startswith(prefix))


def ray_logs(ray) -> bytes:
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return b"".join(path.read_bytes() for path in logs.rglob("*") if path.is_file())


@pytest.mark.ray
def test_growth_run_on_s3_stops_resumes_and_exports(s3_ray, s3, prepared, tiny_config,
                                                    capfd, caplog):
    """A 2-stage plan with everything on S3: stopped after 4 steps (as a preemption would) with
    checkpoints at steps 2 and 4, the newest left as a crash during its upload leaves it (marker
    and state there, weights cut short, moments missing); rerun, it resumes from the complete
    checkpoint 2 on S3 (not from scratch, not from the torn one), grows, trains stage 1 and
    exports a model stock transformers loads. No credential shows up anywhere the run wrote or
    logged."""
    import torch
    from transformers import AutoModelForCausalLM

    from raygrow import driver
    from raygrow.config import Shape
    from raygrow.grow.state import load_into_model
    from raygrow.train import checkpoint

    stopped = driver.train(growth_plan(tiny_config, s3, "grown", stop_after=4), show_progress=False)
    assert not stopped["complete"] and stopped["stages"][0]["steps"] == 4
    run = "s3://runs/runs/grown"
    torn = f"runs/grown/stage-0/{checkpoint.dir_name(4)}"
    weights = s3.client.get_object(Bucket="runs", Key=f"{torn}/model.safetensors")["Body"].read()
    s3.client.put_object(Bucket="runs", Key=f"{torn}/model.safetensors",
                         Body=weights[: len(weights) // 2])
    s3.client.delete_object(Bucket="runs", Key=f"{torn}/optimizer.safetensors")
    assert checkpoint.latest_valid(f"{run}/stage-0") == f"{run}/stage-0/{checkpoint.dir_name(2)}"
    assert json.loads(
        s3.client.get_object(Bucket="runs", Key="runs/grown/coordinator.json")["Body"].read()
    )["phase"] == "training"

    summary = driver.train(growth_plan(tiny_config, s3, "grown"), show_progress=False)
    assert summary["complete"] and [stage["steps"] for stage in summary["stages"]] == [4, 4]
    stage0 = [json.loads(line)
              for line in storage.read_bytes(f"{run}/stage-0/metrics.jsonl").splitlines()]
    resumes = [r for r in stage0 if r.get("event") == "resume"]
    assert [(r["step"], r["checkpoint"]) for r in resumes] == [(2, checkpoint.dir_name(2))]
    assert [r["step"] for r in stage0 if "event" not in r] == [1, 2, 3, 4]  # resumed, not restarted
    (transition,) = summary["transitions"]
    assert transition["depth_op"] == "stack" and transition["val_loss_after"] > 0
    keys = s3.keys("runs")
    for name in ("summary.json", "coordinator.json", "metrics.jsonl", "report.png",
                 "stage-1/init/complete.json",
                 "stage-0/export/config.json", "export/model.safetensors", "export/tokenizer.json"):
        assert f"runs/grown/{name}" in keys, name
    assert json.loads(storage.read_bytes(f"{run}/summary.json"))["stages"][1]["steps"] == 4

    final = checkpoint.latest_valid(f"{run}/stage-1")
    assert final == f"{run}/stage-1/{checkpoint.dir_name(4)}"
    state, meta = checkpoint.load(final)
    assert meta["step"] == 4 and meta["shape"]["layers"] == 4
    ours = load_into_model(state, Shape(**meta["shape"]), meta["vocab"],
                           eos_id=prepared[1].eos_id).eval()
    tokens = torch.randint(0, 256, (2, 16))
    with storage.local_copy(f"{run}/export") as local:
        exported = AutoModelForCausalLM.from_pretrained(local).eval()
        with torch.no_grad():
            assert torch.allclose(exported(tokens).logits, ours(tokens).logits, atol=1e-5)

    written = objects_text(s3, "runs/")
    logged = ray_logs(s3_ray) + "".join(capfd.readouterr()).encode() + caplog.text.encode()
    for secret in (s3.secret, s3.key_id):
        assert secret.encode() not in written and secret.encode() not in logged


# ---- versions and sweeps on S3: the same executor, the same storage layer ------------------


@pytest.mark.ray
def test_versions_plan_on_s3_releases_each_version(s3_ray, s3, prepared, tiny_config):
    """A continual versions plan with its run, version corpora and shards on S3: each version's
    release is exported there and scored, and nothing is written locally."""
    from raygrow.config import VersionsConfig, from_dict
    from raygrow.versions.runner import run_versions

    versions = from_dict(VersionsConfig, {"mode": "continual", "data": [
        {"documents": {"start": 0, "end": 20}, "tokens": 2 * 512},
        {"documents": {"start": 20, "end": 40}, "tokens": 2 * 512}]})
    config = replace(s3_config(tiny_config, s3, "versions", train={"deterministic": False}),
                     versions=versions)
    summary = run_versions(config, show_progress=False)
    assert summary["complete"] and [v["cost"]["steps"] for v in summary["versions"]] == [2, 2]
    keys = s3.keys("runs")
    for version in ("v1", "v2"):
        assert f"runs/versions/release/{version}/export/config.json" in keys
    assert all(0 < v["release_val_loss"] < 10 for v in summary["versions"])
    assert "runs/versions/coordinator.json" in keys and "runs/versions/summary.json" in keys
    assert any(key.startswith("datasets/versions/") for key in keys)  # the version corpora


@pytest.mark.ray
def test_sweep_on_s3_writes_its_trials_and_best_plan_there(s3_ray, s3, prepared,
                                                           tiny_config, tmp_path):
    from raygrow.tune import sweep

    base = s3_config(tiny_config, s3, "sweep-base", model={"layers": 4, "hidden": 32, "heads": 4,
                                                            "kv_heads": 2, "ffn": 64},
                     train={"val_every": 2, "warmup_steps": 1, "deterministic": False})
    result = sweep(base, space={"d": [0.4], "g": [2]}, flop_budget=6 * 272_064 * 512, name="on-s3",
                   storage="s3://runs/sweeps", concurrency=1, show_progress=False)
    (row,) = result.rows
    assert row.status == "complete" and row.val_loss > 0, result.table
    assert result.sweep_dir == "s3://runs/sweeps/on-s3"
    keys = s3.keys("runs")
    for name in ("sweep.json", "trials.csv", "trials.md", "sweep.png", "best_plan.yaml",
                 f"runs/{row.run}.yaml", f"runs/{row.run}.log",
                 f"runs/{row.run}/export/config.json"):
        assert f"sweeps/on-s3/{name}" in keys, name
    assert not list(tmp_path.iterdir())  # nothing local


def test_the_lease_works_on_s3_too(s3):
    from raygrow.errors import RaygrowError
    from raygrow.lease import Lease

    storage.configure_s3(s3.endpoint)
    first = Lease("s3://runs/leased", timeout_s=60)
    first.acquire("leased")
    try:
        assert "leased/lease.json" in s3.keys("runs")
        with pytest.raises(RaygrowError, match="being written by another driver"):
            Lease("s3://runs/leased", timeout_s=60).acquire("leased")
    finally:
        first.release()
    assert "leased/lease.json" not in s3.keys("runs")


def test_a_key_that_leaves_its_directory_is_never_downloaded(s3, tmp_path):
    from raygrow.errors import DataError

    storage.configure_s3(s3.endpoint)
    s3.client.put_object(Bucket="runs", Key="escape/ok.txt", Body=b"fine")
    s3.client.put_object(Bucket="runs", Key="escape/../../outside.txt", Body=b"evil")
    with pytest.raises(DataError, match="leaves its directory"):
        with storage.local_copy("s3://runs/escape"):
            pass
    assert not (tmp_path.parent / "outside.txt").exists()


# ---- a plan that starts from a Hugging Face model directory on S3 (stages[0].init) ----------


@pytest.fixture(scope="module")
def model_on_s3(s3, tmp_path_factory) -> tuple[str, Path]:
    """A tiny Llama written by stock transformers, uploaded to s3://runs/models/tiny-llama; the
    local copy too (its tokenizer is what a plan names as data.tokenizer)."""
    from raygrow.tiny_hf import write_tiny_model

    local = write_tiny_model(tmp_path_factory.mktemp("model") / "tiny-llama", "llama")
    storage.configure_s3(s3.endpoint)
    storage.upload_dir(local, "s3://runs/models/tiny-llama", last="config.json")
    return "s3://runs/models/tiny-llama", local


def init_plan(s3: S3Server, init: str, storage_root: str, dataset_cache: str, **data) -> dict:
    """Stage 0 is the model on S3 (0 tokens), stage 1 its zero-depth growth, 2 steps."""
    return {"name": "from-s3-model", "storage": storage_root, "s3": {"endpoint_url": s3.endpoint},
            "data": {"source": "stdlib", "seq_len": 32, "max_documents": 60,
                     "val_fraction": 0.1, "cache_dir": dataset_cache, "rows_per_shard": 512,
                     **data},
            "train": {"batch_tokens": 512, "micro_batch": 4, "workers": 1, "cpus_per_worker": 1,
                      "lr": 1e-3, "warmup_steps": 0, "log_every": 1, "val_every": 2,
                      "val_rows": 8, "max_failures": 0},
            "checkpoint": {"every_steps": 2, "keep": 1},
            "stages": [{"init": init, "tokens": 0},
                       {"growth": {"depth_op": "zero"}, "shape": {"layers": 4},
                        "tokens": 2 * 512}]}


def test_a_model_on_s3_without_data_tokenizer_is_refused_naming_it(s3, model_on_s3, tmp_path,
                                                                   dataset_cache):
    from raygrow.config import run_config
    from raygrow.errors import ConfigError

    init, _ = model_on_s3
    with pytest.raises(ConfigError) as refused:
        run_config(init_plan(s3, init, str(tmp_path / "runs"), dataset_cache))
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith(f"data.tokenizer: required when stages[0].init is on S3 ({init})")
    assert not (tmp_path / "runs").exists()


@pytest.mark.ray
@pytest.mark.slow  # the pretrained-init run itself is covered locally by test_pretrained_runs
def test_a_plan_starts_from_a_model_on_s3_and_exports_there(s3_ray, s3, model_on_s3,
                                                            dataset_cache):
    """stages[0].init on S3 with the tokenizer named locally: the shape comes from the S3
    config.json, stage 0's export is the source model unchanged, the zero-depth growth keeps its
    function, and the final export on S3 loads in stock transformers as the same class."""
    import torch
    from transformers import AutoModelForCausalLM

    from raygrow import driver
    from raygrow.config import run_config
    from raygrow.grow import PRESERVATION_TOLERANCE, load_into_model, max_logit_difference
    from raygrow.train import checkpoint

    init, local = model_on_s3
    config = run_config(init_plan(s3, init, "s3://runs/runs", dataset_cache,
                                  tokenizer=str(local)))
    source = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32).eval()
    assert config.stages[0].shape.layers == source.config.num_hidden_layers
    assert config.stages[1].shape.hidden == source.config.hidden_size
    summary = driver.train(config, show_progress=False)
    assert summary["complete"] and [stage["steps"] for stage in summary["stages"]] == [0, 2]
    (transition,) = summary["transitions"]
    assert transition["depth_op"] == "zero" and transition["val_loss_after"] > 0
    run = "s3://runs/runs/from-s3-model"
    with storage.local_copy(f"{run}/stage-0/export") as exported:
        stage0 = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
        assert max_logit_difference(source, stage0, source.config.vocab_size) == 0
    with storage.local_copy(f"{run}/export") as exported:
        final = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
        assert type(final) is type(source) and final.config.num_hidden_layers == 4
        assert final.config.rope_parameters == source.config.rope_parameters
    shape = config.stages[1].shape
    state, _ = checkpoint.load(f"{run}/stage-1/init", moments=False)
    grown = load_into_model(state, shape, shape.vocab)
    assert type(grown) is type(source)
    assert max_logit_difference(source, grown, source.config.vocab_size) <= PRESERVATION_TOLERANCE
