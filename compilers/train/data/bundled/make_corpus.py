"""Write tiny_tales.txt beside this file: the bundled text corpus for character-level language models.

The corpus is generated here from a small seeded English grammar (short tales
about sailors, farmers and weavers, with dialogue), so it carries no
third-party text and no licence question: it is released with nngraph.
Run ``python compilers/train/data/bundled/make_corpus.py`` to regenerate it byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path

NAMES = ["Anna", "Tom", "Mara", "Ben", "Elsa", "Jonas", "Lena", "Hugo", "Ida", "Oskar", "Nell", "Peter",
         "Rosa", "Karl", "Greta", "Milo"]
TRADES = ["sailor", "farmer", "weaver", "baker", "miller", "smith", "fisher", "shepherd", "potter", "carpenter"]
PLACES = ["the harbor", "the old mill", "the market", "the green hill", "the river bank", "the forest",
          "the bakery", "the north field", "the stone bridge", "the lighthouse", "the village square", "the orchard"]
ADJ = ["old", "young", "quiet", "tired", "happy", "clever", "brave", "kind", "proud", "gentle", "careful", "busy"]
THINGS = ["a basket of apples", "a loaf of bread", "a bundle of wool", "a small boat", "a lantern", "a letter",
          "a sack of flour", "a blue coat", "a wooden box", "a net full of fish", "a jar of honey", "a red kite"]
WEATHER = ["The wind was cold", "The sun was warm", "Rain fell all morning", "A grey fog lay on the water",
           "The sky was clear and blue", "Snow covered the roofs", "The evening was calm"]
TIMES = ["In the morning", "At noon", "In the evening", "Late at night", "On Sunday", "At dawn", "After supper"]
VERBS = [("walked to", "walk to"), ("ran to", "run to"), ("rowed to", "row to"), ("went to", "go to"),
         ("hurried to", "hurry to"), ("came back from", "come back from")]
FEEL = ["glad", "worried", "surprised", "sleepy", "hungry", "curious", "calm", "cheerful"]
SAY = ["said", "asked", "called", "whispered", "answered", "laughed"]
LINES = ["Where are you going?", "The tide is coming in.", "Have you seen my dog?", "It will rain tonight.",
         "We must finish the work before dark.", "Come and eat with us.", "The boat is ready.",
         "I will help you carry it.", "Listen to the wind!", "Thank you, my friend.", "The market opens soon.",
         "Do not forget the lantern."]
ENDINGS = ["and everyone went home to sleep.", "and the lights of the village went out one by one.",
           "and the sea was quiet again.", "and they were good friends after that day.",
           "and the story was told for many years."]


def sentence(rng: random.Random, who: str, trade: str) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return f"{rng.choice(WEATHER)}, and {who} {rng.choice(VERBS)[0]} {rng.choice(PLACES)}."
    if kind == 1:
        return f"{rng.choice(TIMES)}, the {rng.choice(ADJ)} {trade} carried {rng.choice(THINGS)} to {rng.choice(PLACES)}."
    if kind == 2:
        other = rng.choice(NAMES)
        return f"\"{rng.choice(LINES)}\" {rng.choice(SAY)} {who}. {other} was {rng.choice(FEEL)}."
    if kind == 3:
        return f"{who} found {rng.choice(THINGS)} near {rng.choice(PLACES)} and felt {rng.choice(FEEL)}."
    if kind == 4:
        past, base = rng.choice(VERBS)
        return f"\"Will you {base} {rng.choice(PLACES)} with me?\" {rng.choice(SAY)} {who}."
    if kind == 5:
        return f"There were {rng.randint(2, 12)} boats at {rng.choice(PLACES)}, and {who} counted them twice."
    if kind == 6:
        return f"The {rng.choice(ADJ)} {rng.choice(TRADES)} gave {who} {rng.choice(THINGS)}."
    return f"{who} {rng.choice(VERBS)[0]} {rng.choice(PLACES)} because the {trade} was {rng.choice(FEEL)}."


def tale(rng: random.Random, number: int) -> str:
    who, trade = rng.choice(NAMES), rng.choice(TRADES)
    title = f"TALE {number}: THE {rng.choice(ADJ).upper()} {trade.upper()}"
    paras = []
    for _ in range(rng.randint(2, 4)):
        paras.append(" ".join(sentence(rng, who, trade) for _ in range(rng.randint(3, 6))))
    paras.append(f"So the day ended, {rng.choice(ENDINGS)}")
    return title + "\n\n" + "\n\n".join(paras) + "\n\n"


def make(size: int = 200_000, seed: int = 1) -> str:
    rng = random.Random(seed)
    parts, total, n = [], 0, 1
    while total < size:
        t = tale(rng, n)
        parts.append(t)
        total += len(t)
        n += 1
    return "".join(parts)


if __name__ == "__main__":
    out = Path(__file__).with_name("tiny_tales.txt")
    out.write_text(make(), encoding="utf-8")
    print(f"wrote {out}")
