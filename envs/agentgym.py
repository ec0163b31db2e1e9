"""HTTP client for AgentGym's environment servers (WooooDyy/AgentGym agentenv-*), one class for all of them.

    env = HTTPEnv("webshop", "http://127.0.0.1:36001")      # what `make_env(name, server=URL)` returns
    obs = env.reset(3); obs, reward, done = env.step("Thought: ...\\nAction: search[red shoes]")

Each environment's server differs in its routes, id field, reset field, the keys of its answers and in how the
client parses the model's turn. This module reproduces AgentGym's client for each (agentenv/envs/<env>.py):

    env           routes           id key    reset body     first observation             step answer  parse
    babyai        /create ...      id        data_idx       reset["observation"]          score        Action:
    sciworld      /create ...      id        data_idx       task_description \\n obs       score        Action:
    maze          /maze/create ... id        game           PROMPT \\n reset["observation"] reward       Action:+norm
    wordle        /wordle/...      id        seed           PROMPT with /filtered_vocab    reward       Action:+norm
    textcraft     /create ...      id        data_idx       reset["observation"]          reward       regex
    alfworld      /create ...      id        game           obs \\nAVAILABLE ACTIONS: ...   reward       ReAct
    webshop       /create ...      env_idx   session_id     GET /observation              reward       ReAct
    weather, movie, todo, academia, sheet (tool envs)
                  /create {id:0}   env_idx   id             GET /observation              reward       raw turn

The server URL is the one AgentGym's client gets as env_server_base, e.g. http://host:port for babyai; for the
LMRL-Gym server (maze and wordle share one) the /maze or /wordle suffix is added when missing.
Instruction prompts: built in for babyai, sciworld, maze, wordle, textcraft, alfworld, webshop (AgentGym's
ReAct prompts, verbatim); the tool environments' prompts are long API listings, so for them pass
`instruction=` (evaluate.py --instruction-from takes the first human turn of an AgentTraj-L record of that env).
Errors: an unreachable server raises ConnectionError naming the URL (timeouts, no hang); an `{"error": ...}`
answer ends the episode with reward 0, as AgentGym's client does. There is no expert over HTTP.
"""
import json
import re
import urllib.error
import urllib.parse
import urllib.request

from envs import ACK, MAX_ROUNDS, split_action

OK = "Ok."

BABYAI_INSTRUCTION = (
    "You are an exploration master that wants to finish every goal you are given. Every round I will give you an "
    "observation, and you have to respond an action and your thought based on the observation to finish the given "
    "task. You are placed in a room and you need to accomplish the given goal with actions.\n\nYou can use the "
    "following actions: \n\n- turn right \n\n- turn left \n\n- move forward \n\n- go to <obj> <id> \n\n- pick up "
    "<obj> <id> \n\n- go through <door> <id>: <door> must be an open door. \n\n- toggle and go through <door> <id>: "
    "<door> can be a closed door or a locked door. If you want to open a locked door, you need to carry a key that "
    "is of the same color as the locked door. \n\n- toggle: there is a closed or locked door right in front of you "
    "and you can toggle it.\nYour response should use the following format:\nThought:\n<Your Thought>\n\nAction:\n"
    "<Your Action>")

_SCIWORLD_ACTIONS = [
    ("open/close OBJ", "open/close a container"), ("de/activate OBJ", "activate/deactivate a device"),
    ("connect OBJ to OBJ", "connect electrical components"), ("disconnect OBJ", "disconnect electrical components"),
    ("use OBJ [on OBJ]", "use a device/item"), ("look around", "describe the current room"),
    ("look at OBJ", "describe an object in detail"), ("look in OBJ", "describe a container's contents"),
    ("read OBJ", "read a note or book"), ("move OBJ to OBJ", "move an object to a container"),
    ("pick up OBJ", "move an object to the inventory"), ("put down OBJ", "drop an inventory item"),
    ("pour OBJ into OBJ", "pour a liquid into a container"), ("dunk OBJ into OBJ", "dunk a container into a liquid"),
    ("mix OBJ", "chemically mix a container"), ("go to LOC", "move to a new location"), ("eat OBJ", "eat a food"),
    ("flush OBJ", "flush a toilet"), ("focus on OBJ", "signal intent on a task object"),
    ("wait", "take no action for 10 iterations"), ("wait1", "take no action for 1 iteration"),
    ("task", "describe current task"), ("inventory", "list your inventory")]
SCIWORLD_INSTRUCTION = (
    "You are an agent for science world. Every round I will give you an observation, you have to respond an action "
    "based on the observation to finish the given task. Here are the actions you may take: ["
    + ", ".join(f'{{"action": "{a}", "description": "{d}"}}' for a, d in _SCIWORLD_ACTIONS)
    + "]\nYour response should use the following format:\nThought:\nyour thoughts.\n\nAction:\nyour next action")

TEXTCRAFT_INSTRUCTION = (
    'You are given few useful crafting recipes to craft items in Minecraft. Crafting commands are of the format '
    '"craft [target object] using [input ingredients]".\nEvery round I will give you an observation, you have to '
    'respond an action based on the state and instruction. You can "get" an object (ingredients) from the inventory '
    'or the environment, look-up the game inventory by "inventory", or "craft" (target) using any of the crafting '
    'commands.\nYour output must strictly follow this format:"Thought:\nyour thoughts.\n\nAction:\nyour next '
    'action"\n\nReminder: \n1. Always specify the quantity when using "get" and "craft" commands. - Example of get: '
    'get 1 lapis lazuli - Example1 of craft: craft 1 blue dye using 1 lapis lazuli - Example2 of craft: craft 1 '
    'golden carrot using 8 gold nugget, 1 carrot\n2. When using "get" command, do not specify whether the item comes '
    'from the inventory or the environment.\n3. You can use ONLY crafting commands provided, do not use your own '
    'crafting commands. However, if the crafting command uses a generic ingredient like "planks", you can use '
    'special types of the same ingredient e.g. "dark oak planks" in the command instead.\n\n')

ALFWORLD_INSTRUCTION = (
    'Interact with a household to solve a task. Imagine you are an intelligent agent in a household environment and '
    'your target is to perform actions to complete the task goal. At the beginning of your interactions, you will '
    'be given the detailed description of the current environment and your goal to accomplish. For each of your '
    'turn, you will be given a list of actions which you can choose one to perform in this turn. You should choose '
    'from two actions: "THOUGHT" or "ACTION". If you choose "THOUGHT", you should first think about the current '
    'condition and plan for your future actions, and then output your action in this turn. Your output must '
    'strictly follow this format:"Thought:\nyour thoughts.\n\nAction:\nyour next action"; If you choose "ACTION", '
    'you should directly output the action in this turn. Your output must strictly follow this format:"Action:\n'
    'your next action". After your each turn, the environment will give you immediate feedback based on which you '
    'plan your next few steps. if the envrionment output "Nothing happened", that means the previous action is '
    'invalid and you should try more options.\n Reminder: \n1. the action must be chosen from the given available '
    'actions. Any actions except provided available actions will be regarded as illegal. \n2. Think when '
    'necessary, try to act directly more in the process.')

WEBSHOP_INSTRUCTION = (
    "You are web shopping.\nI will give you instructions about what to do.\nYou have to follow the instructions.\n"
    "Every round I will give you an observation and a list of available actions, you have to respond an action "
    "based on the state and instruction.\nYou can use search action if search is available.\nYou can click one of "
    "the buttons in clickables.\nAn action should be of the following structure:\nsearch[keywords]\nclick[value]\n"
    "If the action is not valid, perform nothing.\nKeywords in search are up to you, but the value in click must be "
    "a value in the list of available actions.\nRemember that your keywords in search should be carefully "
    "designed.\nYour response should use the following format:\n\nThought:\nI think ... \n\nAction: \n"
    "click[something]")

TOOL_ENVS = ("weather", "movie", "todo", "academia", "sheet")


def react_action(text):
    """webshop / alfworld (BaseAdapter.parse_react): the text after the last "Action:"; without one, the whole
    text if it holds search[ or click[, else the empty action."""
    if text.endswith("</s>"):
        text = text[:-5]
    parts = text.rsplit("Action:", 1)
    if len(parts) == 2:
        return parts[1].strip()
    return text.strip() if ("search[" in text or "click[" in text) else ""


def textcraft_action(text):
    """textcraft client: exactly one "Action:" line, letters/digits/commas/spaces only. None = several actions."""
    found = re.findall(r"Action:\s*(.*?)(?=\n|$)", text, re.DOTALL)
    if len(found) > 1:
        return None
    action = re.sub(r"[^A-Za-z0-9, ]+", "", found[-1] if found else "")
    action = " ".join(action.split()).strip()
    return "inventory" if action.lower() == "look" else action


class HTTPEnv:
    """One AgentGym server-side environment instance, with the interface of envs/__init__.py (no expert)."""

    def __init__(self, name, url, instruction=None, timeout=60.0):
        if name not in MAX_ROUNDS:
            raise ValueError(f"unknown AgentGym environment {name!r}; known: {', '.join(MAX_ROUNDS)}")
        self.name, self.max_rounds, self.timeout = name, MAX_ROUNDS[name], timeout
        url = url.rstrip("/")
        if name in ("maze", "wordle") and not url.endswith("/" + name):
            url += "/" + name
        self.url = url
        self.ack = OK if name == "webshop" or name in TOOL_ENVS else ACK
        self._instruction = instruction or self.builtin_instruction()
        self.id_key = "env_idx" if name == "webshop" or name in TOOL_ENVS else "id"
        if name == "textcraft":
            answer = self.post("create", {"minecraft_dir": "agentenv_textcraft/", "commands": None, "goal": None},
                               with_id=False)
        elif name in TOOL_ENVS:
            answer = self.post("create", {"id": 0}, with_id=False)
        else:
            answer = self.post("create", None, with_id=False)
        self.env_id = answer["id"] if isinstance(answer, dict) else answer
        self.info = {}

    def builtin_instruction(self):
        name = self.name
        if name == "maze":
            from envs.maze import INSTRUCTION
            return INSTRUCTION
        if name == "wordle":
            from envs.wordle import INSTRUCTION
            return INSTRUCTION
        table = {"babyai": BABYAI_INSTRUCTION, "sciworld": SCIWORLD_INSTRUCTION, "textcraft": TEXTCRAFT_INSTRUCTION,
                 "alfworld": ALFWORLD_INSTRUCTION, "webshop": WEBSHOP_INSTRUCTION}
        if name not in table:
            raise ValueError(f"{name}: no built-in instruction prompt for this tool environment; pass the AgentGym "
                             f"prompt (evaluate.py --instruction-from an AgentTraj-L file holding {name} records)")
        return table[name]

    # ---- transport
    def request(self, method, path, body=None, query=None):
        url = f"{self.url}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode() or "null")
        except urllib.error.HTTPError as e:
            raise ConnectionError(f"AgentGym server {url} answered HTTP {e.code}: {e.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConnectionError(f"cannot reach the AgentGym {self.name} server at {url}: {reason}") from None

    def post(self, path, body, with_id=True):
        body = dict(body or {})
        if with_id:
            body[self.id_key] = self.env_id
        return self.request("POST", path, body if body or with_id else None)

    def get(self, path):
        return self.request("GET", path, query={self.id_key: self.env_id})

    # ---- the env interface
    def task_ids(self):
        return None  # the server knows; evaluate.py asks for --tasks A:B

    def instruction(self):
        return self._instruction

    def reset(self, task_id):
        name, t = self.name, int(task_id)
        if name == "maze":
            from envs.maze import PROMPT
            r = self.post("reset", {"game": t})
            first = PROMPT + "\n" + r["observation"] if "error" not in r else r["error"]
        elif name == "wordle":
            from envs.wordle import PROMPT
            r = self.post("reset", {"seed": t})
            first = PROMPT.replace("{{vocab}}", "\n".join(self.get("filtered_vocab")))
        elif name == "sciworld":
            r = self.post("reset", {"data_idx": t})
            first = r["task_description"] + "\n" + r["observation"]
        elif name == "alfworld":
            r = self.post("reset", {"game": t, "world_type": "Text"})
            self.info = {"observation": r["observation"], "available_actions": r.get("available_actions", [])}
            first = self.alfworld_observation()
        elif name == "webshop":
            r = self.post("reset", {"session_id": t})
            first = self.get("observation")
        elif name in TOOL_ENVS:
            r = self.post("reset", {"id": t})
            first = self.get("observation")
        else:  # babyai, textcraft
            r = self.post("reset", {"data_idx": t})
            first = r["observation"]
        if isinstance(r, dict) and "error" in r:
            raise RuntimeError(f"{self.name} server at {self.url} cannot reset task {t}: {r['error']}")
        return first

    def alfworld_observation(self):
        return f"{self.info['observation']}\nAVAILABLE ACTIONS: {','.join(self.info['available_actions'])}"

    def step(self, text):
        name = self.name
        if name in ("babyai", "sciworld", "maze", "wordle"):
            action = split_action(text)
            if name == "maze" and action.lower() in ("up", "down", "left", "right"):
                action = f"move {action.lower()}"
            if name == "wordle":
                clean = action.strip().lower()
                if len(clean) == 5 and clean.isalpha() and " " not in clean:
                    action = " ".join(clean)
        elif name == "textcraft":
            action = textcraft_action(text)
            if action is None:
                return "Error: Only one 'Action' is allowed per response. Please adjust your response.", 0.0, False
        elif name in ("webshop", "alfworld"):
            if text.endswith("</s>"):
                text = text[:-5]
            action = react_action(text)
        else:
            action = text  # tool envs parse the raw turn on the server
        r = self.post("step", {"action": action})
        if "error" in r:  # AgentGym's lmrlgym client: an error answer ends the episode with reward 0
            return str(r["error"]), 0.0, True
        if name == "alfworld":
            self.info = {"observation": r["observation"], "available_actions": r.get("available_actions", [])}
        obs = r["state"] if name == "webshop" else r["observation"]
        reward = r["score"] if name in ("babyai", "sciworld") else r.get("reward", 0.0)
        return obs, float(reward), bool(r.get("done", False))

    def expert_turn(self):
        raise NotImplementedError(f"no expert over HTTP ({self.name} at {self.url}); use a built-in environment")

    def close(self):
        if self.name in ("textcraft", "alfworld"):
            try:
                self.post("close", {})
            except ConnectionError:
                pass
