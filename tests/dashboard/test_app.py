"""The dashboard's JSON API and pages, through Starlette's TestClient over real SQLite studies."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from tests.dashboard.conftest import (
    FAILS,
    WARNS,
    XSS,
    XSS_ERROR,
    XSS_VALUE,
    add_xss_study,
    demo_study,
)
from tunelab import TrialState
from tunelab.dashboard import create_app, serve
from tunelab.dashboard._table import ordered
from tunelab.errors import StorageError, TunelabError
from tunelab.storage import get_storage
from tunelab.trial import FrozenTrial
from tunelab.viz import KINDS

LOCAL = "http://127.0.0.1"
STATIC = Path(__file__).parents[2] / "src" / "tunelab" / "dashboard" / "static"


@pytest.fixture(scope="module")
def client(demo):
    return TestClient(create_app(demo.url), base_url=LOCAL)


def rows(client, **query):
    response = client.get("/api/study/trials", params={"name": "demo", **query})
    assert response.status_code == 200, response.text
    return response.json()


def numbers(client, **query):
    return [row["number"] for row in rows(client, **query)["rows"]]


# Studies and summaries ---------------------------------------------------------------------------
def test_the_studies_list_gives_each_study_its_counts_and_best(client):
    studies = client.get("/api/studies").json()["studies"]
    assert [s["name"] for s in studies] == ["demo", XSS]
    demo = studies[0]
    assert (demo["direction"], demo["metric"], demo["n_trials"]) == ("maximize", "score", 12)
    assert {k: v for k, v in demo["counts"].items() if v} == {
        "COMPLETE": 6,
        "PRUNED": 5,
        "FAILED": 1,
    }
    assert demo["best"]["number"] == 8


def test_a_study_summary_has_the_best_trial_the_final_result_and_the_figures(client, demo):
    summary = client.get("/api/study", params={"name": "demo"}).json()
    best = demo.study.best_trial
    assert summary["best"] == {"number": best.number, "value": best.value, "params": best.params}
    assert summary["result"] == {
        "trial": best.number,
        "test_metrics": {"score": 0.9},
        "retrained_on": "train+validation",
    }
    assert summary["params"] == ["x", "opt"]
    assert summary["figures"] == list(KINDS)


def test_the_poll_answer_is_the_study_revision(client, demo):
    _, revision = demo.study.storage.changes(demo.study.id, 0)
    poll = client.get("/api/study/revision", params={"name": "demo"}).json()
    assert poll == {"revision": revision, "n_trials": 12, "has_result": True}


# The trial table ---------------------------------------------------------------------------------
def test_the_table_pages_through_the_trials_by_number(client):
    first = rows(client, limit=5)
    assert (first["total"], first["offset"], first["limit"]) == (12, 0, 5)
    assert [row["number"] for row in first["rows"]] == [0, 1, 2, 3, 4]
    assert numbers(client, offset=10, limit=5) == [10, 11]
    assert numbers(client, offset=50) == []
    assert rows(client, limit=100_000)["limit"] == 500  # capped: a page, never the whole study


def test_the_table_sorts_by_value_with_missing_values_last_either_way(client, demo):
    trials = demo.study.trials
    by_value = sorted((t for t in trials if t.value is not None), key=lambda t: t.value)
    assert numbers(client, sort="value", limit=50) == [t.number for t in by_value] + [FAILS]
    assert numbers(client, sort="value", order="desc") == [t.number for t in reversed(by_value)] + [
        FAILS
    ]


def test_the_table_sorts_by_a_parameter_state_and_duration(client, demo):
    trials = demo.study.trials
    assert numbers(client, sort="param:x") == [
        t.number for t in sorted(trials, key=lambda t: t.params["x"])
    ]
    by_opt = numbers(client, sort="param:opt", order="desc")
    assert [trials[n].params["opt"] for n in by_opt] == ["b"] * 6 + ["a"] * 6
    assert by_opt[:6] == sorted(by_opt[:6])  # equal values keep their order
    states = [trials[n].state for n in numbers(client, sort="state")]
    assert states == sorted(states, key=list(TrialState).index)
    by_time = numbers(client, sort="duration", order="desc")
    assert [trials[n].duration for n in by_time] == sorted(
        (t.duration for t in trials), reverse=True
    )
    assert numbers(client, sort="param:nope") == list(range(12))  # all missing: kept by number


def test_the_table_filters_by_states_and_by_text(client, demo):
    trials = demo.study.trials
    pruned = [t.number for t in trials if t.state is TrialState.PRUNED]
    assert numbers(client, state="FAILED") == [FAILS]
    assert numbers(client, state="pruned,FAILED") == sorted([*pruned, FAILS])
    repeated = client.get("/api/study/trials?name=demo&state=PRUNED&state=FAILED").json()
    assert repeated["total"] == len(pruned) + 1
    assert numbers(client, q="BOOM") == [FAILS]  # the error text, any case
    with_b = [t.number for t in trials if t.params["opt"] == "b"]
    assert numbers(client, q="opt=b") == with_b
    page = rows(client, q="opt=b", state="COMPLETE", sort="value", order="desc", limit=2)
    assert page["total"] == sum(1 for n in with_b if trials[n].state is TrialState.COMPLETE)
    assert len(page["rows"]) == 2 and page["rows"][0]["number"] == demo.study.best_trial.number


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"sort": "size"}, "sort must be one of number, state, value, duration or param:NAME"),
        ({"order": "up"}, "order must be asc or desc"),
        ({"state": "DONE"}, "state must be among WAITING, RUNNING, PAUSED"),
        ({"offset": "-1"}, "offset must be >= 0"),
        ({"limit": "many"}, "limit must be a whole number, but got 'many'"),
    ],
)
def test_a_bad_table_query_is_a_400_that_says_what_was_expected(client, query, message):
    response = client.get("/api/study/trials", params={"name": "demo", **query})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_ordering_puts_numbers_before_text_and_missing_values_last():
    values = [3, "b", None, math.nan, 1.5, "a", True]
    trials = [
        FrozenTrial(id=i, number=i, state=TrialState.COMPLETE, params={} if v is None else {"p": v})
        for i, v in enumerate(values)
    ]
    up = [values[t.number] for t in ordered(trials, "param:p", descending=False)]
    down = [values[t.number] for t in ordered(trials, "param:p", descending=True)]
    assert up[:5] == [True, 1.5, 3, "a", "b"] and down[:5] == ["b", "a", 3, 1.5, True]
    assert up[5] is None and math.isnan(up[6]) and down[5] is None and math.isnan(down[6])


# One trial ---------------------------------------------------------------------------------------
def trial(client, number):
    response = client.get("/api/study/trial", params={"name": "demo", "number": number})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_trial_has_its_params_reports_timings_and_files(client, demo):
    stored = demo.study.trials[0]
    shown = trial(client, 0)
    assert shown["params"] == stored.params and shown["seed"] == stored.seed
    assert (shown["started_at"], shown["finished_at"]) == (stored.started_at, stored.finished_at)
    assert [r["step"] for r in shown["intermediate"]] == [0, 1, 2, 3]
    assert shown["intermediate"][3]["metrics"] == stored.intermediate[3]
    assert shown["artifacts"]["folder"] == str(
        demo.db.parent / "tunelab-artifacts/demo/trial_00000"
    )
    assert shown["artifacts"]["files"] == [
        {"path": "model.pt", "size": 1000},
        {"path": "logs/train.log", "size": 8},
    ]


def test_a_trial_shows_why_it_stopped_its_warnings_and_its_error(client, demo):
    pruned = next(t for t in demo.study.trials if t.state is TrialState.PRUNED)
    assert trial(client, pruned.number)["stopped"] == pruned.attrs["stopped"]
    assert trial(client, pruned.number)["stopped"]["by"] == "median"
    assert trial(client, WARNS)["warnings"] == ["the learning rate was clipped"]
    failed = trial(client, FAILS)
    assert failed["state"] == "FAILED" and "RuntimeError: boom in user code" in failed["error"]
    assert trial(client, 5)["artifacts"] == {
        "folder": str(demo.db.parent / "tunelab-artifacts/demo/trial_00005"),
        "files": [],
        "truncated": False,
    }


def test_an_artifact_downloads_and_nothing_outside_the_trial_folder_does(client, demo):
    get = lambda path: client.get(  # noqa: E731
        "/api/study/file", params={"name": "demo", "number": 0, "path": path}
    )
    download = get("model.pt")
    assert download.content == b"w" * 1000
    assert download.headers["content-disposition"].startswith("attachment")
    assert get("logs/train.log").text == "epoch 1\n"
    folder = demo.db.parent / "tunelab-artifacts/demo/trial_00000"
    (folder / "outside").symlink_to(demo.db)
    try:
        for path in ["../../../t.db", str(demo.db), "outside", "logs", "", "missing.pt"]:
            response = get(path)
            assert response.status_code == 404, path
            assert "trial 0 has no file" in response.json()["error"]
    finally:
        (folder / "outside").unlink()


def test_artifacts_come_from_the_option_else_the_spec(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    storage = get_storage(url)
    record = storage.create_study("s", "minimize", "loss", spec={"artifacts": str(tmp_path / "a")})
    storage.create_trial(record.id, 0, "t", {"x": 1}, seed=0, proposal={})
    for root, name in [(tmp_path / "a", "from-spec.txt"), (tmp_path / "b", "from-option.txt")]:
        (root / "s" / "trial_00000").mkdir(parents=True)
        (root / "s" / "trial_00000" / name).write_text("x")
    for app, name in [
        (create_app(url), "from-spec.txt"),
        (create_app(url, artifacts_dir=tmp_path / "b"), "from-option.txt"),
    ]:
        shown = TestClient(app, base_url=LOCAL).get("/api/study/trial?name=s&number=0").json()
        assert [f["path"] for f in shown["artifacts"]["files"]] == [name]


# Figures -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_each_figure_comes_as_plotly_json(client, kind):
    response = client.get("/api/study/figure", params={"name": "demo", "kind": kind})
    assert response.status_code == 200, response.text
    figure = response.json()
    assert figure["data"] and "layout" in figure


def test_a_trial_curve_figure_shows_only_that_trial(client):
    figure = client.get("/api/study/figure?name=demo&kind=curves&numbers=2").json()
    assert figure["data"] and all("#2" in trace["name"] for trace in figure["data"])


def test_a_figure_that_cannot_be_made_is_an_error_json(client):
    response = client.get("/api/study/figure?name=demo&kind=slice&params=nope")
    assert response.status_code == 422
    assert response.json()["error"].startswith("slice: ")
    bad = client.get("/api/study/figure?name=demo&kind=curves&numbers=one")
    assert bad.status_code == 400 and "numbers must be trial numbers" in bad.json()["error"]


# Unknown things ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/study?name=nope",
        "/api/study/revision?name=nope",
        "/api/study/trials?name=nope",
        "/api/study/trial?name=nope&number=0",
        "/api/study/figure?name=nope&kind=history",
    ],
)
def test_an_unknown_study_is_a_404_naming_it_and_the_known_ones(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "no study named 'nope'" in response.json()["error"]
    assert "known studies: demo" in response.json()["error"]


def test_an_unknown_trial_or_kind_is_a_404_and_a_missing_name_a_400(client):
    for number in ["12", "x", ""]:
        response = client.get("/api/study/trial", params={"name": "demo", "number": number})
        assert response.status_code == 404
        assert f"study 'demo' has no trial {number!r}" in response.json()["error"]
    kind = client.get("/api/study/figure?name=demo&kind=pie")
    assert kind.status_code == 404 and "kind must be one of history" in kind.json()["error"]
    assert client.get("/api/study").status_code == 400
    assert client.get("/studies/demo/extra/3").status_code == 404


# Pages and escaping ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/", "index.html"),
        ("/studies/demo", "study.html"),
        ("/studies/demo/trials/3", "trial.html"),
        ("/studies/" + quote(XSS, safe=""), "study.html"),
        ("/studies/" + quote(XSS, safe="") + "/trials/0", "trial.html"),
        ("/studies/trials%2F3", "study.html"),  # a study named "trials/3"
    ],
)
def test_pages_are_the_fixed_files_whatever_the_address(client, path, page):
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == (STATIC / page).read_bytes()  # nothing is templated into them


def test_plotly_and_the_page_script_are_served_from_the_package(client):
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    script = client.get("/static/dashboard.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "http://" not in script and "https://" not in script


def test_markup_in_names_values_and_errors_comes_back_as_escaped_json_data(client):
    listing = client.get("/api/studies")
    assert "<" not in listing.text and XSS in [s["name"] for s in listing.json()["studies"]]
    summary = client.get("/api/study", params={"name": XSS})
    assert "<" not in summary.text
    assert summary.json()["params"] == [XSS] and summary.json()["metric"] == XSS
    table = client.get("/api/study/trials", params={"name": XSS})
    assert "<" not in table.text
    assert [row["params"] for row in table.json()["rows"]] == [{XSS: XSS_VALUE}, {XSS: "plain"}]
    assert table.json()["rows"][1]["error"] == XSS_ERROR
    figure = client.get("/api/study/figure", params={"name": XSS, "kind": "slice"})
    assert figure.status_code == 200 and "<" not in figure.text


def test_every_response_carries_the_security_headers(client):
    for path in ["/", "/api/studies", "/static/dashboard.js", "/api/study?name=nope"]:
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


def test_non_finite_numbers_become_null(tmp_path):
    url = f"sqlite:///{tmp_path}/n.db"
    storage = get_storage(url)
    record = storage.create_study("n", "minimize", "loss")
    trial = storage.create_trial(record.id, 0, "t", {"x": 1}, seed=0, proposal={})
    storage.add_report(trial.id, 0, {"loss": math.nan, "grad": math.inf}, owner="t")
    client = TestClient(create_app(url), base_url=LOCAL)
    shown = client.get("/api/study/trial?name=n&number=0").json()
    assert shown["intermediate"] == [{"step": 0, "metrics": {"loss": None, "grad": None}}]


# Access ------------------------------------------------------------------------------------------
def test_with_a_token_every_request_needs_it_and_the_link_sets_a_cookie(demo):
    app = create_app(demo.url, token="s3cret")
    client = TestClient(app, base_url="http://example.org")
    for path in ["/", "/api/studies", "/static/dashboard.js", "/api/studies?token=wrong"]:
        refused = client.get(path)
        assert refused.status_code == 403 and "needs its token" in refused.text
    opened = client.get("/?token=s3cret")
    assert opened.status_code == 200
    cookie = opened.headers["set-cookie"]
    assert "tunelab_token=s3cret" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/api/studies").status_code == 200  # the cookie carries it now
    stranger = TestClient(app, base_url="http://example.org", cookies={"tunelab_token": "guess"})
    assert stranger.get("/api/studies").status_code == 403


def test_without_a_token_only_loopback_names_are_answered(demo):
    app = create_app(demo.url)
    for base in ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:8080"]:
        assert TestClient(app, base_url=base).get("/api/studies").status_code == 200, base
    rebound = TestClient(app, base_url="http://attacker.example").get("/api/studies")
    assert rebound.status_code == 403 and "answers only at" in rebound.text


def test_serving_on_a_network_address_needs_a_token(demo):
    with pytest.raises(TunelabError, match="give a token, or serve on 127.0.0.1"):
        serve(demo.url, host="0.0.0.0")


def test_a_missing_database_is_a_storage_error_and_no_file_is_made(tmp_path):
    missing = tmp_path / "nowhere" / "missing.db"
    with pytest.raises(StorageError, match=f"no database at {missing}"):
        create_app(f"sqlite:///{missing}")
    assert not missing.exists() and not missing.parent.exists()


# Live studies ------------------------------------------------------------------------------------
def test_the_app_follows_a_study_that_grows(tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    study = demo_study(url, trials=4)
    client = TestClient(create_app(url, refresh_every=0), base_url=LOCAL)
    before = client.get("/api/study/revision?name=demo").json()
    history = client.get("/api/study/figure?name=demo&kind=history").json()
    demo_study(url, trials=9)
    after = client.get("/api/study/revision?name=demo").json()
    assert after["revision"] > before["revision"] and after["n_trials"] == 9
    assert rows(client, limit=50)["total"] == 9
    assert client.get("/api/study/figure?name=demo&kind=history").json() != history
    study.set_attr("result", {"test_metrics": {"score": 1.0}})  # takes no revision
    assert client.get("/api/study/revision?name=demo").json()["has_result"] is True
    add_xss_study(study.storage)
    assert len(client.get("/api/studies").json()["studies"]) == 2


def test_refreshes_are_rate_limited(tmp_path):
    url = f"sqlite:///{tmp_path}/slow.db"
    demo_study(url, trials=3)
    client = TestClient(create_app(url, refresh_every=3600), base_url=LOCAL)
    assert client.get("/api/study/revision?name=demo").json()["n_trials"] == 3
    demo_study(url, trials=5)
    assert client.get("/api/study/revision?name=demo").json()["n_trials"] == 3


def test_preloading_reads_the_studies_when_the_server_starts(demo):
    with TestClient(create_app(demo.url, preload=True), base_url=LOCAL) as client:
        assert client.get("/api/study/revision?name=demo").json()["n_trials"] == 12


def test_importing_the_dashboard_imports_no_torch():
    code = "import sys, tunelab.dashboard; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
