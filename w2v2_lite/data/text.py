"""Sentences to speak: a small English grammar over a real vocabulary, no download.

`SentenceGenerator(seed).sentence()` fills one of a few dozen grammatical templates
(subject-verb-object, questions, negations, relative clauses, possessives, numbers)
with words drawn from about 700 entries across parts of speech, so that the corpus
has varied words, word lengths and letter statistics rather than a handful of
repeated sentences. Transcripts are upper-case with single spaces, as in LibriSpeech.
"""

from __future__ import annotations

import random

NOUNS = """
apple garden river window teacher doctor farmer sailor baker painter singer soldier student writer driver
kitten puppy horse rabbit tiger eagle dolphin spider monkey turtle donkey parrot lion camel beaver
table chair basket bottle candle blanket pencil letter ladder mirror pillow hammer bucket bridge castle
forest meadow valley mountain island desert ocean harbor village city market station kitchen library
cottage temple tower tunnel engine rocket wagon bicycle carriage helmet jacket button ribbon curtain
violin trumpet guitar drum piano picture story question answer lesson secret promise journey holiday
morning evening winter summer autumn season storm thunder shadow sunlight moonlight rainbow cloud
breakfast dinner supper sandwich cookie biscuit pepper onion carrot potato tomato lemon orange cherry
melon pumpkin cabbage butter cheese honey coffee blossom flower meadow pebble crystal diamond treasure
kingdom palace prince princess captain sergeant merchant pilgrim stranger neighbor cousin uncle
grandmother grandfather daughter brother sister friend visitor traveler hunter fisherman shepherd
lantern compass anchor feather saddle wheel barrel kettle teapot spoon plate napkin cushion carpet
ticket parcel package message newspaper magazine notebook envelope stamp coin purse wallet umbrella
scarf glove boot stocking collar pocket sleeve thread needle machine clock calendar minute moment
""".split()

PLURAL_EXCEPTIONS = {"fisherman": "fishermen"}

NAMES = """
alice arthur bella charles daisy edward emma frank grace harold henry isabel jack james julia
kate lucy margaret martin mary nora oliver peter rose samuel sarah thomas victor walter william
""".split()

ADJECTIVES = """
old young small large tiny huge quiet noisy bright dark warm cold gentle rough smooth heavy light
happy sad angry clever foolish brave timid honest proud humble busy lazy eager patient curious
golden silver wooden stone broken empty crowded ancient modern strange familiar simple careful
sudden distant narrow wide deep shallow green yellow purple scarlet pale hungry thirsty sleepy
friendly lonely polite rude famous secret hidden precious useful tidy messy sweet bitter fresh
""".split()

# (present, past) forms of verbs that take an object
TRANSITIVE_VERBS = [
    ("find", "found"), ("carry", "carried"), ("paint", "painted"), ("open", "opened"), ("close", "closed"),
    ("follow", "followed"), ("watch", "watched"), ("visit", "visited"), ("build", "built"), ("mend", "mended"),
    ("bring", "brought"), ("sell", "sold"), ("buy", "bought"), ("keep", "kept"), ("hide", "hid"),
    ("lift", "lifted"), ("push", "pushed"), ("pull", "pulled"), ("catch", "caught"), ("throw", "threw"),
    ("clean", "cleaned"), ("wash", "washed"), ("cook", "cooked"), ("taste", "tasted"), ("borrow", "borrowed"),
    ("lend", "lent"), ("read", "read"), ("write", "wrote"), ("draw", "drew"), ("remember", "remembered"),
    ("forget", "forgot"), ("notice", "noticed"), ("admire", "admired"), ("describe", "described"),
    ("examine", "examined"), ("guard", "guarded"), ("chase", "chased"), ("greet", "greeted"), ("call", "called"),
    ("thank", "thanked"), ("help", "helped"), ("answer", "answered"), ("collect", "collected"), ("fetch", "fetched"),
    ("drop", "dropped"), ("break", "broke"), ("fix", "fixed"), ("fill", "filled"), ("pack", "packed"),
    ("deliver", "delivered"), ("discover", "discovered"), ("explore", "explored"), ("measure", "measured"),
    ("polish", "polished"), ("wrap", "wrapped"), ("shake", "shook"), ("steal", "stole"), ("choose", "chose"),
]

# (present, past) forms of verbs without an object
INTRANSITIVE_VERBS = [
    ("sleep", "slept"), ("laugh", "laughed"), ("smile", "smiled"), ("whisper", "whispered"), ("shout", "shouted"),
    ("wait", "waited"), ("arrive", "arrived"), ("leave", "left"), ("travel", "traveled"), ("wander", "wandered"),
    ("run", "ran"), ("walk", "walked"), ("swim", "swam"), ("climb", "climbed"), ("dance", "danced"),
    ("sing", "sang"), ("listen", "listened"), ("rest", "rested"), ("work", "worked"), ("play", "played"),
    ("fall", "fell"), ("disappear", "disappeared"), ("return", "returned"), ("hurry", "hurried"),
    ("shiver", "shivered"), ("sneeze", "sneezed"), ("cough", "coughed"), ("jump", "jumped"), ("kneel", "knelt"),
    ("pause", "paused"), ("vanish", "vanished"), ("glow", "glowed"), ("tremble", "trembled"), ("wake", "woke"),
]

ADVERBS = """
slowly quickly quietly loudly carefully happily sadly suddenly gently eagerly softly proudly
calmly bravely nervously patiently politely rarely often always never yesterday today tomorrow
again early late together alone outside inside upstairs downstairs
""".split()

PREPOSITIONS = "near behind beside under over across through inside along around beyond against toward".split()

TIMES = """
yesterday tonight tomorrow today|in the morning|in the evening|at noon|at midnight|last week|next year|every day
|on sunday|on monday|after dinner|before breakfast|during the storm|in the spring|in the winter
""".replace("\n", "").split("|")

NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred".split()

CONJUNCTIONS = "because although while when after before".split()

PRONOUNS = "he she they we i you".split()

# the words the templates themselves write
FUNCTION_WORDS = """
the a an this that every my her his our some many those will doesn't don't couldn't was there and said
why when where how did
""".split()


def plural(noun: str) -> str:
    """English plural of a noun from `NOUNS`."""
    if noun in PLURAL_EXCEPTIONS:
        return PLURAL_EXCEPTIONS[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    """He/she form of a present-tense verb: carry -> carries, watch -> watches."""
    return plural(verb)


def vocabulary() -> set[str]:
    """Every word the generator can emit (lower case)."""
    words = set(NOUNS) | {plural(n) for n in NOUNS} | set(NAMES) | {n + "'s" for n in NAMES} | set(ADJECTIVES)
    for present, past in TRANSITIVE_VERBS + INTRANSITIVE_VERBS:
        words |= {present, past, third_person(present)}
    words |= set(FUNCTION_WORDS) | set(ADVERBS) | set(PREPOSITIONS) | set(NUMBERS) | set(CONJUNCTIONS) | set(PRONOUNS)
    words |= {word for time in TIMES for word in time.split()}
    return words


class SentenceGenerator:
    """Draws grammatical English sentences; the same seed gives the same sentences."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    # ------------------------------------------------------------- phrases
    def noun_phrase(self, plural_noun: bool = False) -> str:
        noun = self.rng.choice(NOUNS)
        words = [plural(noun) if plural_noun else noun]
        if self.rng.random() < 0.5:
            words.insert(0, self.rng.choice(ADJECTIVES))
        if plural_noun:
            first = self.rng.choice(["the", "some", "many", "those", self.rng.choice(NUMBERS)])
        else:
            first = self.rng.choice(["the", "a", "this", "that", "every", "my", "her", "his", "our"])
            if first == "a" and words[0][0] in "aeiou":
                first = "an"
        return " ".join([first, *words])

    def subject(self) -> tuple[str, bool]:
        """A subject and whether it is third-person singular."""
        kind = self.rng.random()
        if kind < 0.3:
            return self.rng.choice(NAMES), True
        if kind < 0.45:
            pronoun = self.rng.choice(PRONOUNS)
            return pronoun, pronoun in ("he", "she")
        if kind < 0.6:
            return self.noun_phrase(plural_noun=True), False
        return self.noun_phrase(), True

    def place(self) -> str:
        return f"{self.rng.choice(PREPOSITIONS)} {self.noun_phrase()}"

    # ------------------------------------------------------------ clauses
    def clause(self) -> str:
        """One clause, in one of several grammatical shapes."""
        rng = self.rng
        subject, singular = self.subject()
        transitive = rng.choice(TRANSITIVE_VERBS)
        intransitive = rng.choice(INTRANSITIVE_VERBS)
        shape = rng.randrange(12)
        if shape == 0:
            return f"{subject} {transitive[1]} {self.noun_phrase(rng.random() < 0.3)} {self.place()}"
        if shape == 1:
            return f"{subject} {intransitive[1]} {rng.choice(ADVERBS)}"
        if shape == 2:
            present = third_person(transitive[0]) if singular else transitive[0]
            return f"{subject} {present} {self.noun_phrase()} {rng.choice(TIMES)}"
        if shape == 3:
            return f"{subject} will {intransitive[0]} {self.place()} {rng.choice(TIMES)}"
        if shape == 4:
            auxiliary = "doesn't" if singular else "don't"
            return f"{subject} {auxiliary} {transitive[0]} {self.noun_phrase(True)}"
        if shape == 5:
            return f"{rng.choice(NAMES)}'s {rng.choice(NOUNS)} was {rng.choice(ADJECTIVES)} and {rng.choice(ADJECTIVES)}"
        if shape == 6:
            return f"there was {self.noun_phrase()} {self.place()}"
        if shape == 7:
            return f"{subject} {transitive[1]} {self.noun_phrase()} that {intransitive[1]} {rng.choice(ADVERBS)}"
        if shape == 8:
            return f"{rng.choice(TIMES)} {subject} {intransitive[1]} {self.place()}"
        if shape == 9:
            return f"{subject} couldn't {transitive[0]} {self.noun_phrase()} {rng.choice(ADVERBS)}"
        if shape == 10:
            return f"{subject} said that {self.noun_phrase()} was {rng.choice(ADJECTIVES)}"
        return f"{subject} {rng.choice(ADVERBS)} {transitive[1]} {rng.choice(NUMBERS)} {plural(rng.choice(NOUNS))}"

    def question(self) -> str:
        rng = self.rng
        subject, _ = self.subject()
        wh = rng.choice(["why", "when", "where", "how"])
        return f"{wh} did {subject} {rng.choice(TRANSITIVE_VERBS)[0]} {self.noun_phrase()}"

    def sentence(self) -> str:
        """One sentence, upper-case words separated by single spaces (a LibriSpeech-style transcript)."""
        kind = self.rng.random()
        if kind < 0.12:
            text = self.question()
        elif kind < 0.35:
            text = f"{self.clause()} {self.rng.choice(CONJUNCTIONS)} {self.clause()}"
        else:
            text = self.clause()
        return " ".join(text.split()).upper()
