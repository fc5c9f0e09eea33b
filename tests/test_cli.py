import argparse
import json, subprocess, sys

import pytest

from ctlrepro.cli import main, parser
from ctlrepro.evaluate import EvalConfig, run_generation
from ctlrepro.testing import tiny_llama


class Crashing(tuple):
    "A (model, tokenizer) whose model dies on the n-th generate call, like a run killed mid-stage"
    def __new__(cls, n):
        model, tok = tiny_llama()
        real, calls = model.generate, {"n": 0}
        def gen(*a, **k):
            calls["n"] += 1
            if calls["n"] >= n: raise KeyboardInterrupt("killed")
            return real(*a, **k)
        model.generate = gen
        return super().__new__(cls, (model, tok))


def test_a_killed_run_resumes_without_losing_finished_shards(tmp_path):
    job, settings = EvalConfig(limit=2, max_new_tokens=4, batch_size=32), [None, (4, 0), (0, 4)]
    with pytest.raises(KeyboardInterrupt):
        run_generation(job, settings, tmp_path, progress=False, model_tok=Crashing(2))  # one shard per batch: dies in shard 2
    done = sorted(p.name for p in (tmp_path / "shards").glob("*.parquet"))
    assert len(done) == 1 and done[0].startswith("none-") and (tmp_path / "shards" / done[0]).with_suffix(".json").exists()
    assert not (tmp_path / "generations.parquet").exists()
    first = (tmp_path / "shards" / done[0]).read_bytes()
    res = run_generation(job, settings, tmp_path, progress=False, model_tok=tiny_llama())
    assert (tmp_path / "shards" / done[0]).read_bytes() == first  # reused, not regenerated
    assert len(res) == 3 * 2 * 3
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["n_responses"] == 18 and rec["versions"]["torch"] and len(rec["shards"]) == 3
    assert rec["device"] == "cpu" and rec["dtype"].startswith("torch.")   # the placement the shards are keyed on


def test_cli_rejects_bad_levels(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["chat", "--helpful", "5", "--harmless", "0", "Hi"])
    assert e.value.code == 2
    assert "accepted levels are 0..4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--settings", "4,9"])
    assert "accepted levels are 0..4" in capsys.readouterr().err
    for bad, says in [("-1,2", "helpful level -1 is out of range"), ("-1,2,3", "write it as H,S")]:   # argparse alone would take it for a flag
        with pytest.raises(SystemExit) as e: main(["generate", "--settings", "none", bad])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "ctlrepro generate" in err and "argument --settings" in err and says in err, err
    from ctlrepro.cli import _negative_settings
    assert _negative_settings(["generate", "--settings", "-0,2", "--limit", "1"]) == ["generate", "--settings", "0,2", "--limit", "1"]
    assert _negative_settings(["chat", "--helpful", "4", "--harmless", "0", "--", "-1,2"])[-1] == "-1,2"   # a prompt, not a setting
    assert parser().parse_args(["chat", "--helpful", "4", "--harmless", "0", "--", "-1,2"]).prompt == "-1,2"
    said = []                                                                          # a caller's own error handler gets argparse's line
    with pytest.raises(argparse.ArgumentTypeError): _negative_settings(["generate", "--settings", "-1,2"], said.append)
    assert len(said) == 1 and said[0].startswith("argument --settings: ") and "helpful level -1 is out of range" in said[0], said
    assert set(parser().subcommands) >= {"reproduce", "generate", "chat", "train"}


def test_python_dash_m_runs_the_command():
    "`python -m ctlrepro.cli` is the `ctlrepro` script: it parses and refuses like it, rather than exiting 0 having done nothing"
    ok = subprocess.run([sys.executable, "-m", "ctlrepro.cli", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "reproduce" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "ctlrepro.cli", "chat", "--helpful", "9", "--harmless", "0", "Hi"], capture_output=True, text=True)
    assert bad.returncode == 2 and "accepted levels are 0..4" in bad.stderr


def test_train_refuses_a_bad_config_and_a_missing_selfgen_folder(tmp_path):
    for bad, says in [("not json", "Expecting value"), ("[1, 2]", "a JSON array, not an object"), ("null", "a JSON null, not an object"), ('{"objective": "nope"}', "accepted are")]:
        with pytest.raises(SystemExit) as e: main(["train", "--model", "tiny", "--selfgen", str(tmp_path), "--out", str(tmp_path / "o"), "--config", bad])
        assert str(e.value).startswith("ctlrepro train: --config") and says in str(e.value)
    for bad, says, not_says in [('{"stpes": 3, "lr": 0.1}', "unknown field(s) ['stpes'] (did you mean 'steps' for 'stpes'?); TrainConfig accepts ['objective', 'steps', ", "JSON object"),
                                ('{"stpes": 3, "lr": 0.1}', "unknown field(s) ['stpes'] (", "'lr']"),
                                ('{"kind_weights": {"bogus": 1}}', "unknown kind(s) 'bogus'; accepted are", "JSON object"),
                                ('{"steps": "ten"}', "steps='ten' is a str; give an int", "JSON object")]:   # the JSON parsed: the message names the field, not the format
        with pytest.raises(SystemExit) as e: main(["train", "--model", "tiny", "--selfgen", str(tmp_path), "--out", str(tmp_path / "o"), "--config", bad])
        assert str(e.value).startswith("ctlrepro train: --config") and says in str(e.value) and not_says not in str(e.value), str(e.value)
    with pytest.raises(SystemExit) as e: main(["train", "--model", "tiny", "--selfgen", str(tmp_path / "nosuch"), "--out", str(tmp_path / "o")])
    assert "does not exist" in str(e.value) and "nosuch" in str(e.value)
    with pytest.raises(SystemExit) as e: main(["train", "--model", "tiny", "--selfgen", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "holds no selfgen.parquet" in str(e.value), str(e.value)
    (tmp_path / "selfgen.parquet").write_bytes(b"not a parquet file")   # an interrupted copy: named, with what to do
    with pytest.raises(SystemExit) as e: main(["train", "--model", "tiny", "--selfgen", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "selfgen.parquet could not be read as parquet" in str(e.value) and "rerun the selfgen stage" in str(e.value), str(e.value)
    import pandas as pd
    with pytest.raises(SystemExit) as e:                                  # the file itself, not its folder: the folder is named
        main(["train", "--model", "tiny", "--selfgen", str(tmp_path / "selfgen.parquet"), "--out", str(tmp_path / "o")])
    assert "is a file, not a folder (its folder: " in str(e.value) and repr(str(tmp_path)) in str(e.value), str(e.value)
    for frame, says in [(pd.DataFrame({"prompt": ["Hi"], "text": ["Hello"]}), "lacks column(s) ['response', 'helpful', 'harmless']"),
                        (pd.DataFrame({"prompt": [], "response": [], "helpful": [], "harmless": []}), "holds no rows")]:
        frame.to_parquet(tmp_path / "selfgen.parquet")
        with pytest.raises(SystemExit) as e: main(["train", "--model", "tiny", "--selfgen", str(tmp_path), "--out", str(tmp_path / "o")])
        assert says in str(e.value) and "selfgen.parquet" in str(e.value), str(e.value)


def test_chat_from_a_saved_controllable_model(tmp_path, capsys, monkeypatch):
    import pandas as pd
    from ctlrepro import models
    from ctlrepro.objectives import TrainConfig, train
    base, tok = tiny_llama()
    base.save_pretrained(tmp_path / "base"); tok.save_pretrained(tmp_path / "base")
    data = pd.DataFrame([{"prompt": "Hi", "response": "Hello!", "helpful": h, "harmless": 1} for h in range(5)])
    pm, _ = train(base, tok, data, TrainConfig(steps=2, batch_size=2), progress=False)
    models.save_controllable(pm, tok, tmp_path / "ctl", base=str(tmp_path / "base"))
    calls, real = [], models.load_controllable
    monkeypatch.setattr(models, "load_controllable", lambda *a, **k: calls.append(a) or real(*a, **k))
    main(["chat", "--model", str(tmp_path / "ctl"), "--helpful", "4", "--harmless", "1", "--max-new-tokens", "5", "--device", "cpu", "Hi"])
    assert len(calls) == 1 and capsys.readouterr().out.endswith("\n")  # the saved adapter was loaded and an answer printed


def test_reproduce_rejects_unknown_stages_and_devices(capsys):
    for argv in (["reproduce", "--only", "finetuning"], ["reproduce", "--device", "tpu"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'finetuning'" in err and "'baseline'" in err and "invalid choice: 'tpu'" in err


def test_reproduce_refuses_a_bad_preset_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  finetune:\n    train: {stepz: 3}\n")
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--preset", str(bad), "--out", str(tmp_path / "run")])
    msg = str(e.value.code)
    assert msg.startswith("ctlrepro reproduce: ") and "stepz" in msg and "\n" not in msg   # the field named, no traceback
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())          # refused before any stage ran
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--preset", "no-such-preset", "--out", str(tmp_path / "run")])
    assert "no-such-preset" in str(e.value.code)


def test_errors_are_one_line_naming_the_value(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CTLREPRO_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as e:                        # the README's chat command before any run
        main(["chat", "--model", str(tmp_path / "no-model"), "--helpful", "4", "--harmless", "1", "Hi"])
    msg = str(e.value.code)
    assert msg.startswith("ctlrepro chat: could not load model") and str(tmp_path / "no-model") in msg and "\n" not in msg
    with pytest.raises(SystemExit) as e:                        # one stage whose upstream stages never ran
        main(["reproduce", "--only", "figures", "--out", str(tmp_path / "run")])
    assert "stage 'validate' is not finished" in str(e.value.code) and "\n" not in str(e.value.code)
    for argv, says in [(["align", "--steps", "0", "--out", str(tmp_path / "al")], "steps=0"),          # was: --out made, then refused
                       (["generate", "--prompts", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "gen")], "missing.jsonl"),   # was: the model loaded first
                       (["generate", "--model", "./no-model-here", "--limit", "1", "--out", str(tmp_path / "gen2")], "model='./no-model-here': no such file"),   # was: gen2/shards made
                       (["generate", "--limit", "0", "--out", str(tmp_path / "gen3")], "--limit 0: give a whole number >= 1, or leave --limit out"),   # was: "or None for all"
                       (["align", "--model", "./no-model-here", "--steps", "1", "--out", str(tmp_path / "al2")], "model='./no-model-here': no such file")]:
        with pytest.raises(SystemExit) as e: main(argv)
        assert says in str(e.value.code) and "\n" not in str(e.value.code)
        assert not (tmp_path / argv[-1].rsplit("/", 1)[-1]).exists()                           # refused before any folder was made
    bad = tmp_path / "bad-model"; bad.mkdir(); (bad / "config.json").write_text("{not json")   # a folder that exists and fails to load
    with pytest.raises(SystemExit) as e: main(["generate", "--model", str(bad), "--limit", "1", "--out", str(tmp_path / "gen4")])
    assert str(bad) in str(e.value.code) and not (tmp_path / "gen4" / "shards").exists()   # was: an empty shards folder left after the failed load
    f = tmp_path / "p.jsonl"; f.write_text("{}\n")                     # --out naming a file: was a NotADirectoryError traceback after the checks (reproduce: after every stage's plan)
    for argv in (["reproduce", "--preset", "smoke", "--check"], ["generate", "--limit", "1"], ["align", "--steps", "1"], ["train-scorers"]):
        with pytest.raises(SystemExit) as e: main([*argv, "--out", str(f)])
        assert f"out='{f}': is a file; give a folder" in str(e.value.code) and "\n" not in str(e.value.code)
    with pytest.raises(SystemExit) as e: main(["generate", "--limit", "1", "--out", str(f / "run")])
    assert f"{f} is a file" in str(e.value.code)
    monkeypatch.setenv("CTLREPRO_TRACEBACK", "1")               # who wants the traceback gets the exception itself
    with pytest.raises(RuntimeError, match="is not finished"):
        main(["reproduce", "--only", "figures", "--out", str(tmp_path / "run")])


def test_error_line_gives_a_failed_stage_its_cause():
    from ctlrepro.cli import error_line
    try:
        try: raise ValueError("eval.limit=99: the eval split holds 40 prompts of kind 'harmful'\nmore detail")
        except ValueError as c: raise RuntimeError("stage 'baseline' failed; the executed notebook with the error is runs/x/20_baseline.ipynb") from c
    except RuntimeError as e:
        line = error_line(e)
    assert line == ("stage 'baseline' failed; the executed notebook with the error is runs/x/20_baseline.ipynb "
                    "(cause: ValueError: eval.limit=99: the eval split holds 40 prompts of kind 'harmful')")


def test_train_command_saves_a_controllable_model_and_reuses_it(tmp_path, capsys):
    import numpy as np
    import pandas as pd
    from ctlrepro.tokens import LevelBinner
    base, tok = tiny_llama()
    base.save_pretrained(tmp_path / "base"); tok.save_pretrained(tmp_path / "base")
    sg = tmp_path / "selfgen"; sg.mkdir()
    pd.DataFrame([{"prompt": "Hi", "response": ["No.", "Hello there!"][h % 2], "helpful": h, "harmless": 4 - h} for h in range(5)]).to_parquet(sg / "selfgen.parquet")
    for a in ("helpful", "harmless"): LevelBinner(k=5).fit(np.linspace(0, 1, 20)).save(sg / f"binner_{a}.json")
    argv = ["train", "--model", str(tmp_path / "base"), "--selfgen", str(sg), "--out", str(tmp_path / "ctl"),
            "--config", json.dumps({"objective": "exmate", "steps": 3, "batch_size": 2, "m_negatives": 2, "where": "user"})]
    main(argv)
    rec = json.loads((tmp_path / "ctl" / "controllable.json").read_text())
    assert rec["objective"] == "exmate" and rec["config"]["steps"] == 3 and (tmp_path / "ctl" / "adapter").is_dir()
    main(argv)
    assert "reusing" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown field.*TrainConfig accepts"):
        main(argv[:-1] + ['{"objectiv": "clm"}'])
    gen = ["generate", "--model", str(tmp_path / "ctl"), "--out", str(tmp_path / "gen"), "--limit", "1", "--settings", "4,0", "--max-new-tokens", "3"]
    main(gen)                                                                  # a fine-tuned folder: loaded merged, rendered as it was trained
    out = pd.read_parquet(tmp_path / "gen" / "generations.parquet")
    assert set(out.control) == {"[helpful=4][harmless=0]"} and len(out) == 3
    assert json.loads((tmp_path / "gen" / "run.json").read_text())["config"]["where"] == "user"
    for text in ("[]", '{"config": 3}'):                                    # a record of the wrong shape: one line naming the file
        bad = tmp_path / "bad"; bad.mkdir(exist_ok=True); (bad / "controllable.json").write_text(text)
        with pytest.raises(SystemExit, match="not a record written by save_controllable"): main(["generate", "--model", str(bad), "--out", str(tmp_path / "g2"), "--limit", "1"])
    capsys.readouterr()
    main(gen + ["--where", "system"])                                          # another placement is another result, not a reuse
    said = capsys.readouterr()
    assert json.loads((tmp_path / "gen" / "run.json").read_text())["config"]["where"] == "system" and "reuse " not in said.out
    assert "--where system, but this model was trained with the control string in the 'user' turn" in said.err   # a note, not silence
    main(gen + ["--where", "user"])
    assert "trained with the control string" not in capsys.readouterr().err   # the trained placement: no note
    with pytest.raises(SystemExit, match="temperature"):                     # a refused value: its one line, and no note before it
        main(gen + ["--where", "system", "--temperature", "-1"])
    assert "trained with the control string" not in capsys.readouterr().err
    with pytest.raises(SystemExit, match="bogus"):                            # a value refused only when the model loads: no note either
        main(gen + ["--where", "system", "--dtype", "bogus"])
    assert "trained with the control string" not in capsys.readouterr().err


def test_reproduce_check_plans_without_running(tmp_path, capsys):
    plan = tmp_path / "plan.yaml"                                                                # the packaged benchmarks: a checkout without ../shared/data has no XSTest or AdvBench
    plan.write_text("extends: smoke\nstages:\n  benchmarks: {benchmarks: [rho-overrefusal, harmbench]}\n")
    main(["reproduce", "--preset", str(plan), "--check", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert out.count("would run") >= 2 * 10 and "[finetune] would run 24_finetune.ipynb" in out   # a log line and a table row per stage
    assert not (tmp_path / "run").exists()                                                      # nothing ran, nothing written
    assert "seconds" not in out                                                                 # a plan times nothing (its table showed 0.0 for every stage)
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: smoke\nstages:\n  finetune:\n    train: {lr: 5e-4}\n")
    with pytest.raises(SystemExit) as e:                                                         # the checks are the same as a run's
        main(["reproduce", "--preset", str(bad), "--check", "--out", str(tmp_path / "run")])
    assert "train.lr='5e-4' is a str" in str(e.value.code)
