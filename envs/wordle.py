"""Wordle (LMRL-Gym, Abdulhai et al. 2023) as AgentGym serves it, with a consistent-guess expert. No dependencies.

LMRL-Gym's Wordle is a knowledge-state game (llm_rl_scripts/wordle/env/game.py): per letter it keeps, for each of the
5 positions, HERE / NOT_HERE / POSSIBLE; the filtered vocabulary is the words consistent with that knowledge, and
at every valid guess the hidden word is drawn from the filtered vocabulary with `random.Random(seed)` (the same in
distribution as one hidden word fixed up front). The game is won when one word is left and it has been guessed;
it ends after 6 guesses. We reimplement exactly that, with AgentGym's choices (agentenv-lmrlgym wordle server):
vocabulary `tweet_words.txt` (40 words), reward shifted from [-1, 0] to [0, 1] (1 on the winning guess, else 0),
an invalid guess (not 5 lowercase letters in the vocabulary) uses up a try and is answered "invalid word".
A valid guess is answered with LMRL-Gym's reformatted feedback line, "b y g g b\n" (its newline included).
The task id is the seed, as in AgentGym's /wordle/reset {"seed": id}. The client side (instruction, prompt,
action parsing) is envs/protocol.py.
"""
import random

from envs import protocol
from envs.base import Env

# LMRL-Gym llm_rl_scripts/wordle/vocab/tweet_words.txt, in file order (the order matters for the seeded draws).
VOCAB = """panic solar shire proxy point robot prick wince crimp knoll sugar whack mount perky could wrung light those
moist shard pleat aloft skill elder frame humor pause ulcer ultra robin cynic aroma caulk shake dodge swill tacit
other thorn trove""".split()
N_TRIES = 6
NUM_TASKS = 10000
NOT_HERE, POSSIBLE, HERE = 0, 1, 2

INSTRUCTION = protocol.INSTRUCTION["wordle"]
PROMPT = protocol.WORDLE_PROMPT  # the client's first observation; {{vocab}} is the vocabulary, one word a line


def extract_guess(action):
    """The word AgentGym's server plays for the action its 2024 client sends (the text after the first "Action:",
    WordleEnv.parse_action): LMRL-Gym's deformat_history strips it and removes its spaces. Nothing else: "SOLAR"
    stays upper case and is not a word of the vocabulary."""
    return action.strip().replace(" ", "")


def satisfies(knowledge, word):
    """LMRL-Gym CharState.word_satisfies for every letter."""
    for ch, know in knowledge.items():
        if all(k == POSSIBLE for k in know):
            continue
        if all(k == NOT_HERE for k in know):
            if ch in word:
                return False
            continue
        for i, k in enumerate(know):
            if (k == HERE and word[i] != ch) or (k == NOT_HERE and word[i] == ch):
                return False
        if ch not in word:
            return False
    return True


def update(knowledge, guess, target):
    """LMRL-Gym WordleState.transition_state: the new knowledge after `guess` against `target`."""
    new = {ch: list(k) for ch, k in knowledge.items()}
    for i, ch in enumerate(guess):
        know = new.setdefault(ch, [POSSIBLE] * 5)
        if ch == target[i]:
            know[i] = HERE
        elif ch in target:
            know[i] = NOT_HERE
        else:
            new[ch] = [NOT_HERE] * 5
    return new


def feedback(knowledge, guess):
    """LMRL-Gym transition_sequence for the last guess, read off the knowledge state: g / b / y per letter."""
    out = []
    for i, ch in enumerate(guess):
        know = knowledge[ch]
        if know[i] == HERE:
            out.append("g")
        elif all(k == NOT_HERE for k in know):
            out.append("b")
        elif know[i] == NOT_HERE:
            out.append("y")
    return " ".join(out)


class WordleEnv(Env):
    name, split, max_rounds = "wordle", "held-in", 8

    def __init__(self):
        self.done = True

    def task_ids(self):
        return range(NUM_TASKS)

    def instruction(self):
        return INSTRUCTION

    def reset(self, task_id):
        self.rng = random.Random(int(task_id))
        self.knowledge = {}       # letter -> [NOT_HERE | POSSIBLE | HERE] * 5; absent letters are all POSSIBLE
        self.candidates = list(VOCAB)
        self.history = []         # (guess, feedback) of valid guesses
        self.tries = 0
        self.done = False
        # the client reads the vocabulary once after /create, when the server's filtered vocabulary is all of it
        return protocol.first_observation("wordle", vocab=VOCAB)

    def step(self, text):
        if self.done:
            return "The task has finished.", 0.0, True
        guess = extract_guess(self.parse_action(text))
        self.tries += 1
        if len(guess) != 5 or not all("a" <= ch <= "z" for ch in guess) or guess not in VOCAB:
            self.done = self.tries >= N_TRIES
            return "invalid word", 0.0, self.done
        target = self.rng.choice(self.candidates)
        self.knowledge = update(self.knowledge, guess, target)
        self.candidates = [w for w in VOCAB if satisfies(self.knowledge, w)]
        fb = feedback(self.knowledge, guess)
        self.history.append((guess, fb))
        won = len(self.candidates) == 1 and any(g == self.candidates[0] for g, _ in self.history)
        self.done = won or self.tries >= N_TRIES
        return fb + "\n", (1.0 if won else 0.0), self.done

    def expert_turn(self):
        """Guess the consistent word that leaves the fewest candidates in expectation (ties: vocabulary order)."""
        cands = self.candidates

        def expected_left(guess):
            parts = {}
            for target in cands:  # the new knowledge depends only on this g/y/b pattern (see `update`)
                key = "".join("g" if g == t else "y" if g in target else "b" for g, t in zip(guess, target))
                parts[key] = parts.get(key, 0) + 1
            return sum(n * n for n in parts.values()) / len(cands)

        guess = min(cands, key=expected_left)
        greens = {i: ch for ch, k in self.knowledge.items() for i, v in enumerate(k) if v == HERE}
        absent = sorted(ch for ch, k in self.knowledge.items() if all(v == NOT_HERE for v in k))
        present = sorted(ch for ch, k in self.knowledge.items()
                         if not all(v == NOT_HERE for v in k) and HERE not in k)
        if not self.history:
            thought = (f"Nothing is known yet and {len(cands)} words are possible. \"{' '.join(guess)}\" splits the "
                       f"vocabulary best, so it is a good first guess.")
        else:
            facts = []
            if greens:
                facts.append("the letters in place are " + ", ".join(
                    f"\"{greens[i]}\" at position {i + 1}" for i in sorted(greens)))
            if present:
                facts.append("the word contains " + ", ".join(f'"{c}"' for c in present) + " elsewhere")
            if absent:
                facts.append("it has no " + ", ".join(f'"{c}"' for c in absent))
            left = ("Only \"" + " ".join(guess) + "\" fits all the feedback, so it must be the hidden word."
                    if len(cands) == 1 else
                    f"{len(cands)} vocabulary words still fit: {', '.join(cands)}. \"{' '.join(guess)}\" fits and "
                    f"narrows them down the most, so I guess it next.")
            thought = "From the feedback, " + "; ".join(facts) + ". " + left
        return f"Thought:\n{thought}\n\nAction:\n{' '.join(guess)}"

    def close(self):
        self.done = True
