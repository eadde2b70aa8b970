"""The IQ suite: task families in the spirit of FLM-101B's IQ evaluation, generated locally.

FLM-101B (arXiv 2309.03852, §5) did not publish its data, so these are reconstructions of its
task families, not copies: rule understanding (counting, replace-lowercase, replace-word), pattern
mining (head & tail, full repeating, head slicing, each induced from the item's own few-shot
pairs), anti-interference (multiple key retrieval, bAbI-style supporting facts 1/2/3) and symbolic
mapping (templated classification with label words replaced by random symbol strings).

Every item is a few-shot prompt and one gold answer on one line:

    Q: <question>\\nA: <answer>\\n\\nQ: <question>\\nA: <answer>\\n\\nQ: <question>\\nA:

The model continues after the last `A:`; its greedy generation up to the first newline, stripped,
must equal the answer. The shots of an item share its hidden rule (the head and tail strings, the
repeat count, the symbol of each label), so the rule can only be read off the shots.

Items depend only on (SUITE_VERSION, task, seed, item index, shots): `random.Random` seeded with
a string is stable across Python versions and platforms, and item i does not depend on how many
items are asked for. A change to any generator must bump SUITE_VERSION.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

SUITE_VERSION = "iq-v1"

Pair = tuple[str, str]  # (question, answer); neither holds a newline


@dataclass(frozen=True)
class Item:
    """One evaluation item: the prompt (shots and query, ending in "A:") and the gold answer."""

    prompt: str
    answer: str  # without the leading space the model writes after "A:"

    @property
    def target(self) -> str:
        """What a model should write after the prompt (a space, then the answer)."""
        return " " + self.answer


@dataclass(frozen=True)
class Task:
    """An IQ task: a generator of (question, answer) pairs under one per-item rule."""

    name: str
    family: str  # rule understanding | pattern mining | anti-interference | symbolic mapping
    rule: Callable[[random.Random], object]  # draws an item's hidden rule (shared by its shots)
    pair: Callable[[random.Random, object], Pair]  # one (question, answer) under that rule
    chance: float  # exact match of a uniformly random guess from the answer space
    chance_note: str  # how `chance` is counted
    default_shots: int
    max_shots: int  # more would not fit a short context (the prompts grow with every shot)


def _word(rng: random.Random, low: int, high: int, letters: str = string.ascii_lowercase) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(low, high)))


def _no_rule(rng: random.Random) -> None:
    return None


# ---- rule understanding: the rule is stated in the question ---------------------------------

def _counting(rng: random.Random, rule: object) -> Pair:
    step = rng.randint(1, 3)
    start = rng.randint(0, 9)
    end = start + step * rng.randint(2, 4)
    question = f"count from {start} to {end} in steps of {step}"
    return question, " ".join(str(n) for n in range(start, end + 1, step))


def _replace_lowercase(rng: random.Random, rule: object) -> Pair:
    text = _word(rng, 3, 6, string.ascii_lowercase + string.ascii_uppercase)
    return f"make the lowercase letters of {text} uppercase", text.upper()


_NOUNS = ("cat", "dog", "bird", "fish", "tree", "car", "book", "lamp", "cup", "hat", "box", "sun")
_VERBS = ("sees", "likes", "finds", "wants", "takes", "moves")


def _replace_word(rng: random.Random, rule: object) -> Pair:
    first, second, new = rng.sample(_NOUNS, 3)
    sentence = f"the {first} {rng.choice(_VERBS)} the {second}"
    old = rng.choice((first, second))
    return f"replace {old} with {new} in: {sentence}", sentence.replace(old, new)


# ---- pattern mining: the rule is only in the shots ------------------------------------------

def _head_tail_rule(rng: random.Random) -> tuple[str, str]:
    return _word(rng, 2, 2), _word(rng, 2, 2)


def _head_tail(rng: random.Random, rule: tuple[str, str]) -> Pair:
    text = _word(rng, 3, 5)
    return text, rule[0] + text + rule[1]


def _repeat_rule(rng: random.Random) -> int:
    return rng.randint(2, 3)


def _full_repeating(rng: random.Random, rule: int) -> Pair:
    text = _word(rng, 2, 4)
    return text, text * rule


def _slice_rule(rng: random.Random) -> int:
    return rng.randint(2, 4)


def _head_slicing(rng: random.Random, rule: int) -> Pair:
    text = _word(rng, 6, 8)
    return text, text[:rule]


# ---- anti-interference ------------------------------------------------------------------------

_NAMES = ("mary", "john", "sandra", "daniel", "emma", "omar", "lucy", "pedro")
_PLACES = ("kitchen", "garden", "office", "bedroom", "hallway", "bathroom")
_OBJECTS = ("apple", "football", "milk", "book")
_MOVES = ("moved to", "went to", "travelled to", "journeyed to")
_FILLER = ("the weather was mild that day.", "a bus passed by the window.",
           "nothing else happened for a while.", "the radio played an old song.",
           "someone laughed in the next room.", "the clock ticked on the wall.")
KEYS = 4  # keys hidden per retrieval item


def _key_retrieval(rng: random.Random, rule: object) -> Pair:
    names = rng.sample(_NAMES, KEYS)
    values = rng.sample(range(100, 1000), KEYS)
    sentences = [f"the key of {name} is {value}." for name, value in zip(names, values)]
    sentences += rng.sample(_FILLER, 3)
    rng.shuffle(sentences)
    asked = rng.randrange(KEYS)
    return f"{' '.join(sentences)} what is the key of {names[asked]}?", str(values[asked])


def _one_fact(rng: random.Random, rule: object) -> Pair:
    """bAbI task 1: where a person is, after several moves of several people."""
    people = rng.sample(_NAMES, 2)
    where: dict[str, str] = {}
    story = []
    for _ in range(4):
        person, place = rng.choice(people), rng.choice(_PLACES)
        where[person] = place
        story.append(f"{person} {rng.choice(_MOVES)} the {place}.")
    asked = rng.choice(sorted(where))
    return f"{' '.join(story)} where is {asked}?", where[asked]


def _object_story(rng: random.Random) -> tuple[list[str], str, list[str]]:
    """A story where one person picks an object up and then moves: (sentences, object, the
    object's places in order). Another person moves in between as interference."""
    carrier, other = rng.sample(_NAMES, 2)
    thing = rng.choice(_OBJECTS)
    start, *path = rng.sample(_PLACES, 4)
    story = [f"{carrier} {rng.choice(_MOVES)} the {start}.", f"{carrier} picked up the {thing}."]
    places = [start]
    for place in path[:2]:
        story.append(f"{carrier} {rng.choice(_MOVES)} the {place}.")
        places.append(place)
    # the other person's move lands anywhere after the pick-up: the last place named is not
    # always the answer
    story.insert(rng.randint(2, len(story)),
                 f"{other} {rng.choice(_MOVES)} the {rng.choice(_PLACES)}.")
    return story, thing, places


def _two_facts(rng: random.Random, rule: object) -> Pair:
    """bAbI task 2: where an object is (who carries it, and where that person went)."""
    story, thing, places = _object_story(rng)
    return f"{' '.join(story)} where is the {thing}?", places[-1]


def _three_facts(rng: random.Random, rule: object) -> Pair:
    """bAbI task 3: where an object was before its current place."""
    story, thing, places = _object_story(rng)
    return f"{' '.join(story)} where was the {thing} before the {places[-1]}?", places[-2]


# ---- symbolic mapping -------------------------------------------------------------------------

_TEMPLATES = (  # (sentence template, label → words that fill it)
    ("the film was {}.", {"positive": ("great", "wonderful", "lovely", "superb"),
                          "negative": ("awful", "boring", "terrible", "dull")}),
    ("we talked about {} all day.", {"sport": ("football", "tennis", "rowing"),
                                     "food": ("bread", "cheese", "soup"),
                                     "weather": ("rain", "snow", "wind")}),
)
_SYMBOLS = "#$%&*+=@^~"


def _symbol_rule(rng: random.Random) -> tuple[str, dict[str, str]]:
    template, labels = _TEMPLATES[rng.randrange(len(_TEMPLATES))]
    symbols = set()
    while len(symbols) < len(labels):
        symbols.add(_word(rng, 3, 3, _SYMBOLS))
    return template, dict(zip(labels, sorted(symbols)))


def _symbolic(rng: random.Random, rule: tuple[str, dict[str, str]]) -> Pair:
    template, symbols = rule
    labels = dict(_TEMPLATES)[template]
    label = rng.choice(sorted(labels))
    return template.format(rng.choice(labels[label])), symbols[label]


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("counting", "rule understanding", _no_rule, _counting, 0.0, "open-ended answer", 3, 8),
    Task("replace_lowercase", "rule understanding", _no_rule, _replace_lowercase, 0.0,
         "open-ended answer", 3, 8),
    Task("replace_word", "rule understanding", _no_rule, _replace_word, 0.0,
         "open-ended answer", 3, 8),
    Task("head_tail", "pattern mining", _head_tail_rule, _head_tail, 0.0,
         "open-ended answer", 4, 8),
    Task("full_repeating", "pattern mining", _repeat_rule, _full_repeating, 0.0,
         "open-ended answer", 4, 8),
    Task("head_slicing", "pattern mining", _slice_rule, _head_slicing, 0.0,
         "open-ended answer", 4, 8),
    Task("key_retrieval", "anti-interference", _no_rule, _key_retrieval, 1 / KEYS,
         f"one of the {KEYS} keys in the text", 1, 3),
    Task("supporting_facts_1", "anti-interference", _no_rule, _one_fact, 1 / len(_PLACES),
         f"one of {len(_PLACES)} places", 1, 3),
    Task("supporting_facts_2", "anti-interference", _no_rule, _two_facts, 1 / len(_PLACES),
         f"one of {len(_PLACES)} places", 1, 3),
    Task("supporting_facts_3", "anti-interference", _no_rule, _three_facts, 1 / len(_PLACES),
         f"one of {len(_PLACES)} places", 1, 3),
    Task("symbolic_mapping", "symbolic mapping", _symbol_rule, _symbolic, 5 / 12,
         "one of the item's labels (2 or 3, templates drawn evenly)", 4, 8),
)}


def format_pair(question: str, answer: str | None = None) -> str:
    return f"Q: {question}\nA:" + ("" if answer is None else f" {answer}")


def item(task: Task, seed: int, index: int, shots: int) -> Item:
    """Item `index` of `task` under `seed`: `shots` solved pairs and a query, one hidden rule."""
    rng = random.Random(f"{SUITE_VERSION}:{task.name}:{seed}:{index}")
    rule = task.rule(rng)
    pairs = [task.pair(rng, rule) for _ in range(shots + 1)]
    query, answer = pairs[-1]
    shown = [format_pair(q, a) for q, a in pairs[:-1]]
    return Item(prompt="\n\n".join(shown + [format_pair(query)]), answer=answer)


def items(name: str, seed: int, count: int, shots: int) -> list[Item]:
    """The first `count` items of task `name`."""
    task = TASKS[name]
    return [item(task, seed, index, shots) for index in range(count)]


def training_text(name: str, seed: int, count: int, shots: int) -> list[str]:
    """`count` solved items of `name` as text (prompt + target): data to train a model on the
    task's own generator. Use another seed than the evaluation's."""
    return [entry.prompt + entry.target + "\n" for entry in items(name, seed, count, shots)]
