"""The demo session generator: deterministic, in the robot's legacy shape, sized like production."""

import json
import re
from datetime import datetime

import pytest

from sessions_app.demo import BOTS, make_bot_config, make_session, make_turn

VIETNAMESE = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệịỉĩọỏốồổỗộớờởỡợụủũứừửữựỳỵỷỹ]")


def state_of(session):
    return {k: v for k, v in session.items() if k not in ("history", "bot_config")}


class TestDeterminism:
    def test_same_arguments_give_the_same_session(self):
        assert make_session(3, steps=20, turns=50) == make_session(3, steps=20, turns=50)

    def test_index_and_seed_change_the_session(self):
        base = make_session(3, steps=20, turns=50)
        assert make_session(4, steps=20, turns=50)["history"] != base["history"]
        assert make_session(3, steps=20, turns=50, seed=1)["history"] != base["history"]

    def test_prefix_names_the_conversation(self):
        assert make_session(42, steps=2, turns=2, prefix="x-")["conversation_id"] == "x-000042"

    def test_an_extra_turn_is_deterministic_and_follows_the_history(self):
        session = make_session(5, steps=10, turns=30)
        extra = make_turn(5, 30, step=9)
        assert extra == make_turn(5, 30, step=9)
        assert extra["role"] == "user"
        assert make_turn(5, 31, step=9)["role"] == "assistant"
        assert extra["step"] == 9
        assert extra["created_at"] > session["history"][-1]["created_at"]


@pytest.fixture(scope="module")
def session():
    return make_session(1, steps=12, turns=40)


class TestShape:
    def test_top_level_keys(self, session):
        assert {
            "conversation_id",
            "bot_id",
            "user_id",
            "input_slots",
            "bot_config",
            "record",
            "history",
        } <= session.keys()
        assert session["bot_id"] in dict(BOTS)

    def test_bot_config_has_a_bilingual_scenario(self, session):
        config = session["bot_config"]
        assert {"scenario", "system_prompt", "generation_params"} <= config.keys()
        steps = config["scenario"]["steps"]
        assert len(steps) == 12
        for step in steps:
            assert VIETNAMESE.search(step["prompt"]["vi"])
            assert step["prompt"]["en"].isascii()
            assert step["expected_answers"]
            assert step["hints"]["vi"]
            assert step["hints"]["en"]

    def test_record_has_one_loop_count_per_step_and_asked_questions(self, session):
        record = session["record"]
        assert len(record["LOOP_COUNT"]) == 12
        asked = record["HISTORY_QUESTION"]
        assert [entry["step"] for entry in asked] == list(range(12))
        assert all(entry["attempts"] for entry in asked)
        assert record["TOOL_SCORE"]["pronunciation"]["count"] == 12

    def test_unreached_steps_are_pending(self):
        session = make_session(1, steps=10, turns=4)
        record = session["record"]
        reached = session["history"][-1]["step"]
        assert reached == 7
        assert len(record["LOOP_COUNT"]) == 10
        assert [record["LOOP_COUNT"][f"step_000{i}"]["status"] for i in (8, 9)] == ["pending"] * 2
        assert record["LOOP_COUNT"]["step_0007"]["status"] != "pending"
        assert [entry["step"] for entry in record["HISTORY_QUESTION"]] == list(range(8))

    def test_history_turns(self, session):
        history = session["history"]
        assert len(history) == 40
        assert history[0]["role"] == "system"
        assert [t["role"] for t in history[1:5]] == ["assistant", "user", "assistant", "user"]
        times = [datetime.fromisoformat(t["created_at"]) for t in history]
        assert times == sorted(times)
        assert len(set(times)) == len(times)
        steps = [t["step"] for t in history[1:]]
        assert steps == sorted(steps)
        assert steps[-1] == 11
        assert any(VIETNAMESE.search(t["content"]) for t in history if t["role"] == "assistant")
        assert any("scores" in t for t in history if t["role"] == "user")

    def test_it_is_plain_json(self, session):
        assert json.loads(json.dumps(session, allow_nan=False)) == session

    def test_no_turns(self):
        session = make_session(0, steps=3, turns=0)
        assert session["history"] == []
        assert session["record"]["HISTORY_QUESTION"] == []

    @pytest.mark.parametrize(
        ("steps", "turns", "index"), [(0, 10, 0), (-1, 10, 0), (3, -1, 0), (3, 10, -1)]
    )
    def test_bad_sizes_are_refused(self, steps, turns, index):
        with pytest.raises(ValueError, match="steps must be >= 1"):
            make_session(index, steps=steps, turns=turns)


class TestSharedBotConfig:
    def test_sessions_of_one_bot_share_its_config(self):
        first = make_session(0, steps=8, turns=4)
        again = make_session(len(BOTS), steps=8, turns=4)
        assert first["bot_id"] == again["bot_id"]
        assert first["bot_config"] == again["bot_config"]

    def test_bots_have_their_own_config_and_length_matters(self):
        assert make_bot_config(BOTS[0][0], steps=8) != make_bot_config(BOTS[1][0], steps=8)
        assert make_bot_config(BOTS[0][0], steps=8) != make_bot_config(BOTS[0][0], steps=9)

    def test_an_unknown_bot_is_refused(self):
        with pytest.raises(KeyError, match="bot-nobody"):
            make_bot_config("bot-nobody", steps=3)


class TestSizes:
    """Sizes as the robot stored them (stdlib json), within 15 % of the production figures."""

    @pytest.mark.parametrize(
        ("steps", "turns", "total"),
        [(300, 1_000, 1_000_000), (1_000, 10_000, 6_000_000), (1_000, 50_000, 25_000_000)],
    )
    def test_total_size(self, steps, turns, total):
        size = len(json.dumps(make_session(7, steps=steps, turns=turns)))
        assert total * 0.85 < size < total * 1.15

    def test_state_doc_of_the_1_mb_session_is_about_68_kb(self):
        session = make_session(7, steps=300, turns=1_000)
        assert 68_000 * 0.85 < len(json.dumps(state_of(session))) < 68_000 * 1.15
