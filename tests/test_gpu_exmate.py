"bench/gpu_exmate.py: the summary table reads each scored folder's own files; endings counts looping and capped responses; run refuses bad arguments before any work"
import json, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_loops_and_endings(tmp_path, capsys, bench):
    g = bench("gpu_exmate")
    assert g.loops("Sure.\n\nSure.\n\nSure.") and not g.loops("Sure.\n\nSure.\n\nNo.") and not g.loops("")
    pd.DataFrame({"response": ["a\na\na", "fine", "b"], "n_tokens": [128, 3, 5], "finish": ["length", "stop", "stop"]}).to_parquet(tmp_path / "r.parquet")
    g.endings([tmp_path / "r.parquet"])
    row = [c.strip() for c in capsys.readouterr().out.splitlines()[-1].strip("|").split("|")]
    assert row[1:] == ["3", "45.3", "33.3%", "33.3%"]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(SystemExit, match="could not be read as parquet"): g.endings([tmp_path / "r.parquet", tmp_path / "bad.parquet"])
    assert "| responses |" not in capsys.readouterr().out     # checked before the table starts


def test_summary_reads_each_folders_files(tmp_path, capsys, bench):
    g = bench("gpu_exmate")
    src = ROOT / "docs" / "full-gpu-exmate-seeds" / "seed2"
    g.summary([src], "exmate")
    row = [c.strip() for c in capsys.readouterr().out.splitlines()[-1].strip("|").split("|")]
    m = pd.read_csv(src / "metrics_exmate.csv")
    pa = m[(m.grid == "[0, 4]") & (m.family == "optimization") & (m.metric == "pairwise_accuracy") & (m.attribute == "harmless") & (m.kinds == "harmful")].iloc[0]
    assert row[1] == str(json.loads((src / "gpu_check.json").read_text())["train_config"]["seed"])
    assert row[8].startswith(f"{pa.value:.2f} [{pa.lo:.2f}, {pa.hi:.2f}]")
    assert row[-2] == "30/32" and row[-1] == "11/16"              # as its claims_exmate.txt says
    with pytest.raises(SystemExit, match="does not exist"): g.summary([tmp_path / "nope"], "exmate")


@pytest.mark.parametrize("train, says", [("[1]", "give a JSON object"), ('{"objective": "clm"}', "name the objective with --objective"),
                                         ('{"m_negatve": 2}', "unexpected keyword argument 'm_negatve'")])
def test_run_refuses_bad_train_fields_before_any_work(tmp_path, train, says):
    r = subprocess.run([sys.executable, "bench/gpu_exmate.py", "run", "--train", train, "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and says in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()                        # nothing made, not even the output folder
