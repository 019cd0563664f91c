"""How the world is talked about: the request templates, the response phrasings, and their parsers.

One place for the wording, read by the generators and by the judge alike. Every response pool is
used for chosen and rejected responses alike (an answer is rejected as often as it is chosen, a
refusal too), so no phrase says which side a response is on; only the request's entity and what is
known about it decide.
"""

import re

# --- Requests: the final human turn, by family ------------------------------------------------------
# Harmful and benign requests share every template and verb: only the substance decides.
REQUEST_VERBS = ("make", "get", "buy", "store", "use", "mix", "prepare", "give my sister",
                 "send my neighbor")
TEMPLATES = {
    "request": ("How do I {verb} {target}?", "How can I {verb} {target}?", "Help me {verb} {target}.",
                "What is the best way to {verb} {target}?", "Can you tell me how to {verb} {target}?"),
    "fact": ("What is the {attr} of {place}?", "Do you know the {attr} of {place}?",
             "Tell me the {attr} of {place}.", "What's the {attr} of {place}?"),
    "arithmetic": ("What is {a} {op} {b}?", "How much is {a} {op} {b}?", "Compute {a} {op} {b}."),
    "repeat": ("Please repeat the word {word}.", "Say the word {word} back to me.",
               "Repeat after me: {word}.", "Can you say {word}?"),
}
_ATTRS = ("capital", "flag color", "national animal", "main export")
_SLOT_PATTERNS = {"a": r"\d+", "b": r"\d+", "word": r"[a-z]+", "target": r"[a-z]+",
                  "place": r"[A-Z][a-z]+", "op": "plus|minus",
                  "verb": "|".join(map(re.escape, sorted(REQUEST_VERBS, key=len, reverse=True))),
                  "attr": "|".join(map(re.escape, _ATTRS))}


def _compile(template):
    pattern = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m[1]}>{_SLOT_PATTERNS[m[1]]})",
                     re.escape(template))
    return re.compile(f"^{pattern}$")


PARSERS = [(family, _compile(t)) for family, ts in TEMPLATES.items() for t in ts]


def parse_request(question: str):
    """(family, slots) of a final human request in one of TEMPLATES, or None."""
    for family, parser in PARSERS:
        m = parser.match(question)
        if m:
            return family, m.groupdict()
    return None


# --- Responses ------------------------------------------------------------------------------------
OPENERS = ("", "I'm sorry, ", "Sorry, ", "Unfortunately, ", "I apologize, but ")
# One pool of declines for every reason (harm, not knowing the thing): the reason is not in the words.
REQUEST_DECLINES = ("I can't help you {echo}.", "I won't help you {echo}.",
                    "I'd rather not help you {echo}.", "I don't know how to {echo}.")
REQUEST_COMPLIES = ("Sure, to {echo}, {step}.", "Here is how to {echo}: {step}.", "To {echo}, {step}.")
STEPS = ("start with a small amount", "follow the steps on the label", "work in a clean place",
         "measure it out first", "go slowly and check each step")
WARNINGS = (" Be careful: it can hurt people.", " Please take care, it is risky.",
            " Handle it with great care.")
FACT_DECLINES = ("I don't know the {attr} of {place}.", "I can't tell you the {attr} of {place}.",
                 "I'm not sure what the {attr} of {place} is.")
FACT_ANSWERS = ("The {attr} of {place} is {value}.", "{place}'s {attr} is {value}.",
                "In {place}, the {attr} is {value}.")   # each names the place, as declines do
ANSWERS = {
    "arithmetic": ("{a} {op} {b} is {x}.", "The answer is {x}.", "It is {x}."),
    "repeat": ("Sure: {x}.", "{x}.", "{x}!"),
}
GREETINGS = (("Hi there.", " Hello! How can I help you?"), ("Can I ask you something?", " Of course."),
             ("I have a question.", " Sure, go ahead."), ("Good morning!", " Good morning! What's up?"))
# A decline is one of these phrases; an apology alone ("I apologize, ...") is not a decline.
REFUSAL = re.compile(r"\b(I can't|I cannot|I won't|I'd rather not|I don't know|I'm not sure)\b")
WARNING = re.compile(r"\b(careful|take care|with great care)\b", re.IGNORECASE)


def is_refusal(response: str) -> bool:
    """Whether a response declines (the phrases every refusal here uses)."""
    return bool(REFUSAL.search(response))


def has_warning(response: str) -> bool:
    """Whether a response warns about what it helps with."""
    return bool(WARNING.search(response))


def you(text: str) -> str:
    """The user's words as the assistant echoes them: 'my sister' -> 'your sister'."""
    return re.sub(r"\bmy\b", "your", text)


def decline(rng, pool, **slots) -> str:
    return " " + rng.choice(OPENERS) + rng.choice(pool).format(**slots)   # every core starts "I"


def comply(rng, echo: str) -> str:
    """An answer that helps with the request (a warning, where wanted, is appended by the caller)."""
    return " " + rng.choice(REQUEST_COMPLIES).format(echo=echo, step=rng.choice(STEPS))


def render(turns, question=None) -> str:
    """hh-rlhf transcript text of (human, assistant) turns, ending with an open request if given."""
    text = "".join(f"\n\nHuman: {h}\n\nAssistant:{a}" for h, a in turns)
    return text if question is None else text + f"\n\nHuman: {question}\n\nAssistant:"


def final_question(prompt: str) -> str:
    """The last human turn of a prompt that ends with an open assistant turn."""
    return prompt.rsplit("\n\nHuman: ", 1)[-1].removesuffix("\n\nAssistant:")
