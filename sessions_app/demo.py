"""Deterministic demo conversations in the robot's legacy shape, for seeding and benchmarks.

The same index, length and seed always give the same session; sessions of one bot and length
share one bot_config, as the robot's sessions do.
"""

import random
from datetime import UTC, datetime, timedelta

DEFAULT_SEED = 20250303
EPOCH = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SECONDS_PER_TURN = 15
MEDIA_URL = "https://cdn.example.com/lessons"
AUDIO_URL = "s3://robot-audio/sessions"

# A handful of bots over a few scenarios; each bot has its own system prompt.
BOTS = (
    ("bot-kids-family", "family"),
    ("bot-kids-school", "school"),
    ("bot-teens-travel", "travel"),
    ("bot-teens-family", "family"),
    ("bot-adults-travel", "travel"),
    ("bot-adults-school", "school"),
)
LEVELS = ("pre-A1", "A1", "A2", "B1")
NAMES = ("An", "Bình", "Châu", "Dũng", "Giang", "Hạnh", "Khoa", "Linh", "Minh", "Ngọc", "Phúc")

# Parallel Vietnamese and English phrases: the robot teaches English to Vietnamese children.
PHRASES = (
    ("Chào con, hôm nay chúng ta cùng học tiếng Anh nhé.", "Hello, let's learn English today."),
    ("Con hãy nhìn vào bức tranh và trả lời câu hỏi.", "Look at the picture and answer."),
    ("Đây là mẹ của bạn Lan, mẹ là giáo viên.", "This is Lan's mother, she is a teacher."),
    ("Con có bao nhiêu anh chị em?", "How many brothers and sisters do you have?"),
    ("Giỏi lắm! Con phát âm rất rõ ràng.", "Well done! Your pronunciation is very clear."),
    ("Con thử nói lại chậm hơn một chút nhé.", "Try saying it again a little more slowly."),
    ("Trường của con ở đâu?", "Where is your school?"),
    ("Mình đi sân bay bằng xe buýt.", "We go to the airport by bus."),
    ("Bạn ấy thích đọc sách vào buổi tối.", "She likes reading books in the evening."),
    ("Con nghe kỹ và lặp lại theo cô nhé.", "Listen carefully and repeat after me."),
    ("Từ này có hai âm tiết, nhấn vào âm đầu.", "This word has two syllables, stress the first."),
    ("Hôm qua con đã làm gì sau giờ học?", "What did you do after school yesterday?"),
    ("Chúng ta chuyển sang phần tiếp theo nhé.", "Let's move on to the next part."),
    ("Gần đúng rồi, con chú ý âm cuối /s/.", "Almost right, mind the final /s/ sound."),
)
ANSWERS = (
    "My mother is a teacher.",
    "I have one brother and two sisters.",
    "My school is near my house.",
    "We go to the airport by bus.",
    "She like reading book.",
    "I played football after school.",
    "Con không biết ạ.",
    "Dạ, my father is a doctor.",
    "This is my grandmother, she is seventy.",
)
STATUSES = ("passed", "passed", "passed", "retry", "skipped")


def _rng(seed, *parts):
    # String seeds are hashed with SHA-512, so the sequence never depends on PYTHONHASHSEED.
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def _say(rng, phrases, *, vi):
    return " ".join(pair[0 if vi else 1] for pair in rng.sample(PHRASES, phrases))


def _time(index, seq):
    return (EPOCH + timedelta(days=index, seconds=seq * SECONDS_PER_TURN)).isoformat()


def _step_id(step):
    return f"step_{step:04d}"


def make_bot_config(bot_id, *, steps, seed=DEFAULT_SEED):
    """The bot_config of ``bot_id`` for a scenario of ``steps`` steps: equal calls, equal dicts."""
    scenario = dict(BOTS)[bot_id]
    rng = _rng(seed, "bot", bot_id, steps)
    return {
        "scenario": {
            "id": f"{scenario}-{steps}",
            "title": {"vi": f"Chủ đề: {scenario}", "en": f"Topic: {scenario}"},
            "steps": [
                {
                    "id": _step_id(step),
                    "prompt": {"vi": _say(rng, 4, vi=True), "en": _say(rng, 4, vi=False)},
                    "expected_answers": rng.sample(ANSWERS, 4),
                    "hints": {"vi": _say(rng, 3, vi=True), "en": _say(rng, 3, vi=False)},
                    "explanation": {"vi": _say(rng, 1, vi=True), "en": _say(rng, 1, vi=False)},
                    "feedback": {"correct": _say(rng, 1, vi=True), "retry": _say(rng, 1, vi=True)},
                    "media": {"image": f"{MEDIA_URL}/{scenario}/{_step_id(step)}.png"},
                    "tts": {"voice": "vi-VN-HoaiMyNeural", "rate": rng.choice((0.8, 0.9, 1.0))},
                    "max_loop": rng.choice((2, 3, 3, 4)),
                    "on_fail": _step_id(max(step - 1, 0)),
                }
                for step in range(steps)
            ],
        },
        "system_prompt": (
            f"You are {bot_id}, a patient English tutor for Vietnamese learners. "
            "Speak Vietnamese for instructions and English for the lesson. "
            + " ".join(_say(rng, 3, vi=False) for _ in range(4))
        ),
        "generation_params": {
            "model": "gpt-4o-mini",
            "temperature": 0.6,
            "top_p": 0.9,
            "max_tokens": 256,
            "stop": ["\nUser:", "\nAssistant:"],
        },
    }


def make_turn(index, seq, *, step, seed=DEFAULT_SEED):
    """Turn number ``seq`` of session ``index``: system first, then assistant and user in turn."""
    rng = _rng(seed, "turn", index, seq)
    return _turn(rng, index, seq, step)


def _turn(rng, index, seq, step):
    if seq == 0:
        return {"role": "system", "content": _say(rng, 3, vi=False), "created_at": _time(index, 0)}
    if seq % 2:
        return {
            "role": "assistant",
            "content": f"{_say(rng, 4, vi=True)} {_say(rng, 3, vi=False)}",
            "created_at": _time(index, seq),
            "step": step,
            "meta": {
                "model": "gpt-4o-mini",
                "latency_ms": rng.randint(300, 2500),
                "tokens": {"prompt": rng.randint(800, 3000), "completion": rng.randint(20, 120)},
            },
        }
    turn = {
        "role": "user",
        "content": rng.choice(ANSWERS),
        "created_at": _time(index, seq),
        "step": step,
        "asr": {"confidence": round(rng.uniform(0.55, 0.99), 3), "lang": "en-US"},
        "audio": f"{AUDIO_URL}/{index:06d}/{seq:06d}.wav",
        "nlu": {"intent": "answer", "similarity": round(rng.random(), 3)},
    }
    if rng.random() < 0.7:
        turn["scores"] = {
            "pronunciation": round(rng.uniform(0.3, 1.0), 3),
            "fluency": round(rng.uniform(0.3, 1.0), 3),
            "accuracy": round(rng.uniform(0.3, 1.0), 3),
        }
    return turn


def _record(rng, *, steps, turns, reached):
    loop_count = {}
    history_question = []
    for step in range(steps):
        if step > reached:
            loop_count[_step_id(step)] = {"count": 0, "status": "pending", "last_seq": None}
            continue
        count = rng.randint(1, 3)
        loop_count[_step_id(step)] = {
            "count": count,
            "status": rng.choice(STATUSES),
            "last_seq": min(turns - 1, (step + 1) * turns // steps),
        }
        history_question.append(
            {
                "step": step,
                "attempts": [
                    {"answer": rng.choice(ANSWERS), "score": round(rng.uniform(0.2, 1.0), 3)}
                    for _ in range(count)
                ],
                "hint_used": rng.random() < 0.3,
            }
        )
    return {
        "LOOP_COUNT": loop_count,
        "HISTORY_QUESTION": history_question,
        "TOOL_SCORE": {
            tool: {"avg": round(rng.uniform(0.4, 0.95), 3), "count": len(history_question)}
            for tool in ("pronunciation", "fluency", "grammar", "vocabulary")
        },
    }


def make_session(index, *, steps, turns, seed=DEFAULT_SEED, prefix="demo-"):
    """Session ``index`` with a scenario of ``steps`` steps and ``turns`` history turns.

    Sized like the robot's, as stdlib JSON: the state (everything but history and bot_config)
    grows with steps, about 236 bytes each; bot_config about 1.5 KB a step; a turn about 460
    bytes. So 300 steps and 1,000 turns make about 1 MB with a 70 KB state, 1,000 and 10,000
    about 6 MB, 1,000 and 50,000 about 25 MB.
    """
    if steps < 1 or turns < 0 or index < 0:
        raise ValueError("steps must be >= 1, turns and index >= 0")
    rng = _rng(seed, "session", index)
    bot_id = BOTS[index % len(BOTS)][0]
    # Turns walk through the scenario, so the last turn is at the last step reached.
    step_of = [seq * steps // turns for seq in range(turns)]
    history = [_turn(rng, index, seq, step_of[seq]) for seq in range(turns)]
    return {
        "conversation_id": f"{prefix}{index:06d}",
        "bot_id": bot_id,
        "user_id": f"user-{rng.randrange(10**6):06d}",
        "input_slots": {
            "learner_name": rng.choice(NAMES),
            "age": rng.randint(6, 15),
            "level": rng.choice(LEVELS),
            "native_language": "vi",
            "device_id": f"robot-{rng.randrange(10**4):04d}",
        },
        "bot_config": make_bot_config(bot_id, steps=steps, seed=seed),
        "record": _record(rng, steps=steps, turns=turns, reached=step_of[-1] if turns else -1),
        "history": history,
        "created_at": _time(index, 0),
        "status": "active",
    }
