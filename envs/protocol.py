"""AgentGym's client protocol, as its clients stood at its first commit (WooooDyy/AgentGym f434743, 2024-06-06):
for every environment, the instruction (first human turn), the ack (the gpt turn after it), how the first
observation is put together from the server's answers, and how an assistant turn is turned into the action the
client sends to the server. AgentTraj-L was collected with these clients and the paper evaluates with them, so
every env of this project (built-in and over HTTP) reads and writes exactly this; nothing here is more lenient.

    from envs.protocol import INSTRUCTION, ACK, parse_action, first_observation
    parse_action("maze", "Thought:\\nGo.\\n\\nAction:\\nmove up")     # -> "move up"

The env classes (envs/base.py) call these: each declares its ack and its `parse_action` (first_action by default,
textcraft_action for TextCraft, the whole turn for the tool envs); parse_action(env, text) here is the table of
AgentGym's twelve clients.

Per env (client file agentenv/agentenv/envs/<file>.py at f434743):

    env        client file    ack             first observation                         action sent
    babyai     babyai.py      OK. I'll ...    reset["observation"]                      first_action
    sciworld   sciworld.py    OK. I'll ...    reset["task_description"] "\\n" reset["observation"]   first_action
    maze       lmrlgym.py     OK. I'll ...    MAZE_PROMPT "\\n" reset["observation"]    first_action
    wordle     lmrlgym.py     OK. I'll ...    WORDLE_PROMPT, vocab from GET /filtered_vocab after /create
    alfworld   alfworld.py    OK. I'll ...    obs "\\nAVAILABLE ACTIONS: " a,b,c          first_action
    textcraft  textcraft.py   OK. I'll ...    reset["observation"]                      textcraft_action
    webshop    webshop.py     Ok.             GET /observation                          first_action
    weather, movie, todo, academia, sheet
               <env>.py       Ok.             GET /observation                          the whole turn, unchanged

first_action (BabyAIEnvClient.step and its copies): cut 5 characters if the turn ends with "</s>" (the
character before it goes too), split at "Action:", take the part after the FIRST one (all of the text if there is
none), strip whitespace. Nothing else: no case change, no "up" -> "move up", no spacing of wordle letters (the
lmrlgym server only removes spaces; "SOLAR" is not in its vocabulary). textcraft_action (TextCraftEnvClient.step):
the part before the first "Instruction:", after the LAST "Action:", with every character other than letters,
digits, commas and spaces removed and whitespace runs collapsed; "</s>" is not cut (it leaves an "s"), `look`
is sent as `look`.

Later clients differ (not our behaviour): the September 2025 rewrite parses webshop/alfworld turns with a ReAct
adapter (text after the last "Action:"), gives textcraft a longer prompt, answers a textcraft turn with several
"Action:" lines with an error and sends `look` as `inventory`, and adds an "examine OBJ" action to sciworld's prompt.
"""
import re

COMMIT = "f434743"  # WooooDyy/AgentGym, "Initial commit", 2024-06-06: the clients AgentTraj-L was collected with

ENVS = ("webshop", "alfworld", "textcraft", "babyai", "sciworld", "maze", "wordle",
        "weather", "movie", "todo", "academia", "sheet")
TOOL_ENVS = ("weather", "movie", "todo", "academia", "sheet")

LONG_ACK = "OK. I'll follow your instructions and try my best to solve the task."
ACK = {env: ("Ok." if env == "webshop" or env in TOOL_ENVS else LONG_ACK) for env in ENVS}


def first_action(text):
    """BabyAI/SciWorld/Maze/Wordle/WebShop/ALFWorld clients' step(): the text after the first "Action:"."""
    if text.endswith("</s>"):
        text = text[:-5]
    parts = text.split("Action:")
    return (parts[1] if len(parts) > 1 else parts[0]).strip()


def textcraft_action(text):
    """TextCraftEnvClient.step(): after the last "Action:" (before any "Instruction:"), letters, digits, commas
    and spaces only, whitespace collapsed."""
    action = text.split("Instruction:")[0].split("Action:")[-1]
    action = re.sub(r"[^A-Za-z0-9, ]+", "", action)
    return " ".join(action.split()).strip()


def parse_action(env, text):
    """What AgentGym's 2024 client of `env` sends to its server for the assistant turn `text`."""
    if env == "textcraft":
        return textcraft_action(text)
    if env in TOOL_ENVS:
        return text  # the tool clients post the model's whole turn; the server parses it
    if env not in ENVS:
        raise ValueError(f"unknown AgentGym environment {env!r}; known: {', '.join(ENVS)}")
    return first_action(text)


def first_observation(env, reset=None, observation=None, vocab=None):
    """The first human turn after the ack, as the 2024 client builds it. `reset` is the server's /reset answer
    (a dict), `observation` the GET /observation answer (webshop and the tool envs), `vocab` wordle's
    GET /filtered_vocab answer (a list of words, fetched once right after /create)."""
    if env in ("babyai", "textcraft"):
        return reset["observation"]
    if env == "sciworld":
        return reset["task_description"] + "\n" + reset["observation"]
    if env == "maze":
        return MAZE_PROMPT + "\n" + reset["observation"]
    if env == "wordle":
        return WORDLE_PROMPT.replace("{{vocab}}", "\n".join(vocab))
    if env == "alfworld":
        return f"{reset['observation']}\nAVAILABLE ACTIONS: {','.join(reset['available_actions'])}"
    if env == "webshop" or env in TOOL_ENVS:
        return observation
    raise ValueError(f"unknown AgentGym environment {env!r}; known: {', '.join(ENVS)}")


# ---------------------------------------------------------------------------------------------------------------
# The texts, verbatim from the f434743 clients (tests/test_protocol.py pins their SHA-256). Lines that end in a
# space are written with a final \x20 so that no editor can strip it.

INSTRUCTION = {
    "maze": "You are an expert maze solver.",
    "wordle": "You are an expert wordle player.",
    "webshop": (
        'You are web shopping.\nI will give you instructions about what to do.\nYou have to follow the'
        ' instructions.\nEvery round I will give you an observation and a list of available actions, you have'
        ' to respond an action based on the state and instruction.\nYou can use search action if search is'
        ' available.\nYou can click one of the buttons in clickables.\nAn action should be of the following'
        ' structure:\nsearch[keywords]\nclick[value]\nIf the action is not valid, perform nothing.\nKeywords in'
        ' search are up to you, but the value in click must be a value in the list of available'
        ' actions.\nRemember that your keywords in search should be carefully designed.\nYour response should'
        ' use the following format:\n\nThought:\nI think ... \n\nAction: \nclick[something]'),
    "alfworld": (
        'Interact with a household to solve a task. Imagine you are an intelligent agent in a household'
        ' environment and your target is to perform actions to complete the task goal. At the beginning of your'
        ' interactions, you will be given the detailed description of the current environment and your goal to'
        ' accomplish. For each of your turn, you will be given a list of actions which you can choose one to'
        ' perform in this turn. You should choose from two actions: "THOUGHT" or "ACTION". If you choose'
        ' "THOUGHT", you should first think about the current condition and plan for your future actions, and'
        ' then output your action in this turn. Your output must strictly follow this format:"Thought:\nyour'
        ' thoughts.\n\nAction:\nyour next action"; If you choose "ACTION", you should directly output the'
        ' action in this turn. Your output must strictly follow this format:"Action:\nyour next action". After'
        ' your each turn, the environment will give you immediate feedback based on which you plan your next'
        ' few steps. if the envrionment output "Nothing happened", that means the previous action is invalid'
        ' and you should try more options.\n Reminder: \n1. the action must be chosen from the given available'
        ' actions. Any actions except provided available actions will be regarded as illegal. \n2. Think when'
        ' necessary, try to act directly more in the process.'),
    "textcraft": (
        'You are given few useful crafting recipes to craft items in Minecraft. Crafting commands are of the'
        ' format "craft [target object] using [input ingredients]".\nEvery round I will give you an'
        ' observation, you have to respond an action based on the state and instruction. You can "get" an'
        ' object (ingredients) from the inventory or the environment, look-up the game inventory by'
        ' "inventory", or "craft" (target) using any of the crafting commands. You can use ONLY these crafting'
        ' commands provided, do not use your own crafting commands. However, if the crafting command uses a'
        ' generic ingredient like "planks", you can use special types of the same ingredient e.g. "dark oak'
        ' planks" in the command instead.\nYour response should use the following format:\n\nThought:\n ...'
        ' \n\nAction:\n ... '),
    "babyai": (
        'You are an exploration master that wants to finish every goal you are given. Every round I will give'
        ' you an observation, and you have to respond an action and your thought based on the observation to'
        ' finish the given task. You are placed in a room and you need to accomplish the given goal with'
        ' actions.\n\nYou can use the following actions: \n\n- turn right \n\n- turn left \n\n- move forward'
        ' \n\n- go to <obj> <id> \n\n- pick up <obj> <id> \n\n- go through <door> <id>: <door> must be an open'
        ' door. \n\n- toggle and go through <door> <id>: <door> can be a closed door or a locked door. If you'
        ' want to open a locked door, you need to carry a key that is of the same color as the locked door.'
        ' \n\n- toggle: there is a closed or locked door right in front of you and you can toggle it.\nYour'
        ' response should use the following format:\nThought:\n<Your Thought>\n\nAction:\n<Your Action>'),
    "sciworld": (
        'You are an agent for science world. Every round I will give you an observation, you have to respond an'
        ' action based on the observation to finish the given task. Here are the actions you may take:'
        ' [{"action": "open/close OBJ", "description": "open/close a container"}, {"action": "de/activate OBJ",'
        ' "description": "activate/deactivate a device"}, {"action": "connect OBJ to OBJ", "description":'
        ' "connect electrical components"}, {"action": "disconnect OBJ", "description": "disconnect electrical'
        ' components"}, {"action": "use OBJ [on OBJ]", "description": "use a device/item"}, {"action": "look'
        ' around", "description": "describe the current room"}, {"action": "look at OBJ", "description":'
        ' "describe an object in detail"}, {"action": "look in OBJ", "description": "describe a container\'s'
        ' contents"}, {"action": "read OBJ", "description": "read a note or book"}, {"action": "move OBJ to'
        ' OBJ", "description": "move an object to a container"}, {"action": "pick up OBJ", "description": "move'
        ' an object to the inventory"}, {"action": "put down OBJ", "description": "drop an inventory item"},'
        ' {"action": "pour OBJ into OBJ", "description": "pour a liquid into a container"}, {"action": "dunk'
        ' OBJ into OBJ", "description": "dunk a container into a liquid"}, {"action": "mix OBJ", "description":'
        ' "chemically mix a container"}, {"action": "go to LOC", "description": "move to a new location"},'
        ' {"action": "eat OBJ", "description": "eat a food"}, {"action": "flush OBJ", "description": "flush a'
        ' toilet"}, {"action": "focus on OBJ", "description": "signal intent on a task object"}, {"action":'
        ' "wait", "description": "take no action for 10 iterations"}, {"action": "wait1", "description": "take'
        ' no action for 1 iteration"}, {"action": "task", "description": "describe current task"}, {"action":'
        ' "inventory", "description": "list your inventory"}]\nYour response should use the following'
        ' format:\nThought:\nyour thoughts.\n\nAction:\nyour next action'),
}

# MazeEnvClient._fully_first_observation (the client puts it before the server's first observation)
MAZE_PROMPT = """\
Your objective is to reach the goal in as few steps as possible. At each step you will be given information about where the goal is, your current position,
and the walls that surround you.\x20

When you move right you increase your y position by 1, when you move down you increase your x position by 1.\x20

Here is an example.

```
environment: The goal is at position 8, 6. Your current position is at position 5, 6. There is a wall above you.
action: move left
environment: The goal is at position 8, 6. Your current position is at position 5, 5. There are walls above you, below you.
action: move left
environment: The goal is at position 8, 6. Your current position is at position 5, 4. There are walls above you, below you.
action: move up
environment: The goal is at position 8, 6. Your current position is at position 5, 4. There are walls above you, below you.
action: move left
environment: The goal is at position 8, 6. Your current position is at position 5, 3. There are walls to your left, below you.
action: move down
environment: The goal is at position 8, 6. Your current position is at position 5, 3. There are walls to your left, below you.
action: move left
environment: The goal is at position 8, 6. Your current position is at position 5, 3. There are walls to your left, below you.
action: move down
environment: The goal is at position 8, 6. Your current position is at position 5, 3. There are walls to your left, below you.
action: move left
environment: The goal is at position 8, 6. Your current position is at position 5, 3. There are walls to your left, below you.
action: move right
environment: The goal is at position 8, 6. Your current position is at position 5, 4. There are walls above you, below you.
action: move down
environment: The goal is at position 8, 6. Your current position is at position 5, 4. There are walls above you, below you.
action: move right
environment: The goal is at position 8, 6. Your current position is at position 5, 5. There are walls above you, below you.
action: move right
environment: The goal is at position 8, 6. Your current position is at position 5, 6. There is a wall above you.
action: move down
environment: The goal is at position 8, 6. Your current position is at position 6, 6. There are walls to your right, to your left.
action: move down
environment: The goal is at position 8, 6. Your current position is at position 7, 6. There are walls to your right, to your left.
action: move right
environment: The goal is at position 8, 6. Your current position is at position 7, 6. There are walls to your right, to your left.
action: move down
environment: Success
```

Your possible actions are "move up", "move down", "move left", "move right". Formally, your return should be in this format:
Thought:
<Your Thought>

Action:
<Your Action>

Now let's start a new game. Return your action and your thought in the format above strictly. Now, make the optimal action given the current environment state:"""

# WordleEnvClient.first_observation; {{vocab}} becomes the server's filtered vocabulary, one word a line
WORDLE_PROMPT = """\
Welcome to the game of Wordle. Your objective is to guess a hidden 5 letter word. You have 6 attempts to guess it correctly and you should try to guess it in as few attempts as possible. When guessing the word, you should format your word as a space separated sequence of letters, like "s h i r e" for example. After guessing the word, you will receive feedback from the game environment in the form of a sequence of 5 space separated letters like "b y g g b", where each letter indicates some information about the hidden word. The environment will return one of three letters – "b", "g", or "y" – for each letter in the word you guessed. We describe the meaning of each letter below:

"b": If the environment returns a "b", it means that the letter at that position in your guessed word is not in the hidden word.
"y": If the environment returns a "y", it means that the letter at that position in your guessed word is in the hidden word but is not in the correct position.
"g": If the environment returns a "g", it means that the letter at that position in your guessed word is in the hidden word and is in the correct position.

As a note, if you guess an invalid word (e.g. not a 5 letter word or a word not in the vocabulary), the environment will respond with an "invalid word" message. In general though, you should use this information returned by the environment to update your belief about what the hidden word might be and adjust your next guess accordingly.

Here is the complete list of valid vocabulary words that are accepted by the game:
```
{{vocab}}
```

Here is an example. If the current status of the game is given as:
```
guess 1: p a n i c
feedback 1: b b y b b
guess 2: f e l o n
feedback 2: g b b y g
```
Based on the feedback from the environment, you know that the first letter is "f", the last letter is "n", and there is an "o" somewhere in the word, but it is not in the second to last position. You also know that there is not a "p", "a", "i", "c", "e", or "l" in the word. Knowing this, you might guess the next word to be:
Thought:
I know that the first letter is "f", the last letter is "n", and there is an "o" somewhere in the word, but it is not in the second to last position. I also know that there is not a "p", "a", "i", "c", "e", or "l" in the word. A good word from the vocabulary to try might therefore be "f r o w n", since it is in the vocabulary, meets all known letter constraints, and we get to gain more information about the position of "o". Therefore this is a good guess to try next.

Action:
f r o w n

Formally, your return should be in this format:
Thought:
<Your Thought>

Action:
<The Word You Guess>

The guessed word is in the vocabulary, meets all known letter constraints, and we get to gain more information about the position of "o", so it is a good guess to try next.

Now let's start a new game. Remember, the word you guess should be strictly in the vocabulary. You should return your thought and your word strictly in the formation mentioned above."""

# The tool environments' instructions (their API listings and one worked example each)
INSTRUCTION["weather"] = """\
You are an autonomous intelligent agent. You can use actions to help people solve problems.
We detail name, description, input(parameters) and output(returns) of each action as follows:
Name: get_user_current_date()
Description: Get the user's current date.
Returns:
The current date in 'YYYY-MM-DD' format.

Name: get_user_current_location()
Description: Get the user's current city.
Returns:
The user's current city.

Name: get_historical_temp(latitude, longitude, start_date, end_date)
Description: Get historical temperature data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the historical data (YYYY-MM-DD).
- end_date (Type: string): The end date of the historical data (YYYY-MM-DD).
Returns:
Historical temperature data.

Name: get_historical_rain(latitude, longitude, start_date, end_date)
Description: Get historical rainfall data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the historical data (YYYY-MM-DD).
- end_date (Type: string): The end date of the historical data (YYYY-MM-DD).
Returns:
Historical rainfall data.

Name: get_historical_snow(latitude, longitude, start_date, end_date)
Description: Get historical snowfall data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the historical data (YYYY-MM-DD).
- end_date (Type: string): The end date of the historical data (YYYY-MM-DD).
Returns:
Historical snowfall data.

Name: get_snow_forecast(latitude, longitude, start_date, end_date)
Description: Get snowfall forecast data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the forecast (YYYY-MM-DD).
- end_date (Type: string): The end date of the forecast (YYYY-MM-DD).
Returns:
Snowfall forecast data.

Name: get_current_snow(latitude, longitude, current_date)
Description: Get current snowfall data for a specified location and date.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- current_date (Type: string): The current date to retrieve snowfall data (YYYY-MM-DD).
Returns:
Current snowfall data.

Name: get_current_temp(latitude, longitude, current_date)
Description: Get current temperature data for a specified location and date.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- current_date (Type: string): The current date to retrieve temperature data (YYYY-MM-DD).
Returns:
Current temperature data.

Name: get_latitude_longitude(name)
Description: Get latitude and longitude information for a specified location name.
Parameters:
- name (Type: string): The name of the location. (e.g., city name)
Returns:
latitude and longitude information for the specified location.

Name: get_elevation(latitude, longitude)
Description: Get elevation data for a specified location.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
Returns:
Elevation data for the specified location.

Name: get_temp_forecast(latitude, longitude, start_date, end_date)
Description: Get temperature forecast data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the forecast (YYYY-MM-DD).
- end_date (Type: string): The end date of the forecast (YYYY-MM-DD).
Returns:
Temperature forecast data.

Name: get_rain_forecast(latitude, longitude, start_date, end_date)
Description: Get rainfall forecast data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the forecast (YYYY-MM-DD).
- end_date (Type: string): The end date of the forecast (YYYY-MM-DD).
Returns:
Rainfall forecast data.

Name: get_current_rain(latitude, longitude, current_date)
Description: Get current rainfall data for a specified location and date.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- current_date (Type: string): The current date to retrieve rainfall data (YYYY-MM-DD).
Returns:
Current rainfall data.

Name: get_distance(latitude1, longitude1, latitude2, longitude2)
Description: Calculate the distance between two sets of latitude and longitude coordinates.
Parameters:
- latitude1 (Type: number): The latitude of the first location.
- longitude1 (Type: number): The longitude of the first location.
- latitude2 (Type: number): The latitude of the second location.
- longitude2 (Type: number): The longitude of the second location.
Returns:
The distance between the two sets of coordinates in kilometers.

Name: get_historical_air_quality_index(latitude, longitude, start_date, end_date)
Description: Get historical air quality index data for a specified location and date range.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- start_date (Type: string): The start date of the historical data (YYYY-MM-DD).
- end_date (Type: string): The end date of the historical data (YYYY-MM-DD).
Returns:
Historical air quality index (PM2.5) data.

Name: get_current_air_quality_index(latitude, longitude, current_date)
Description: Get current air quality index data for a specified location and date.
Parameters:
- latitude (Type: number): The latitude of the location.
- longitude (Type: number): The longitude of the location.
- current_date (Type: string): The current date to retrieve air quality index data (YYYY-MM-DD).
Returns:
Current air quality index (PM2.5) data.

Name: get_air_quality_level(air_quality_index)
Description: Determine the air quality level based on the air quality index (AQI).
Parameters:
- air_quality_index (Type: number): The air quality index (AQI) value.
Returns:
The air quality level, which can be 'good', 'fair', 'moderate', 'poor', 'very poor', or 'extremely poor'.

Name: check_valid_actions()
Description: Get supported actions for current tool.
Returns:
- actions (Type: array): Supported actions for current tool.

Name: finish(answer)
Description: Return an answer and finish the task
Parameters:
- answer (Type: ['string', 'number', 'array']): The answer to be returned

If you want to get the latitude and longitude information of a city, you must call "get_latitude_longitude"! Do not generate it by yourself which maybe wrong. If you are finished, you will call "finish" action.
Please refer to the format of examples below to solve the requested goal. Please provide your thought to solve the question. You should give the thought with no more than 3 sentences. You need to give your thought together with your action!

Your response must be in the format of:
Thought: [your thought]

Action: [your action] with Action Input: [your action input]

Here is an example:

Goal: What is the lowest temperature yesterday?
Thought: This question is about the lowest temperature yesterday, I should first get the location information of the user.

Action: get_user_current_location with Action Input: {}
Observation: Shanghai
Thought: The user is currently in Shanghai. I should first get the latitude and longitude information of Shanghai.

Action: get_latitude_longitude with Action Input: {"name": "Shanghai"}
Observation: {'results': [{'name': 'Shanghai', 'latitude': 31.22222, 'longitude': 121.45806, 'country_code': 'CN'}, {'name': 'Shanghai', 'latitude': 34.85009, 'longitude': -87.08501, 'country_code': 'US'}, {'name': 'Cornelia', 'latitude': 38.64363, 'longitude': -93.73938, 'country_code': 'US'}]}
Thought: I have got the latitude and longitude information of Shanghai, I should get the current date to get the date of yesterday.

Action: get_user_current_date with Action Input: {}
Observation: 2015-01-02
Thought: Current date in 2015-01-02, so yesterday is 2015-01-01. Now, I can get the temperature data of Shanghai in 2015-01-01.

Action: get_historical_temp with Action Input: {"latitude": 31.22222, "longitude": 121.45806, "start_date": "2015-01-01", "end_date": "2015-01-01"}
Observation: {'latitude': 31.200005, 'longitude': 121.5, 'daily_units': {'time': 'iso8601', 'temperature_2m_max': '°C', 'temperature_2m_min': '°C', 'temperature_2m_mean': '°C'}, 'daily': {'time': ['2015-01-01'], 'temperature_2m_max': [4.3], 'temperature_2m_min': [-3.6], 'temperature_2m_mean': [-0.1]}}
Thought: The average temperature is -0.1, I will call finish to end the task.

Action: finish with Action Input: {"answer": -0.1}
Observation: -0.1
"""

INSTRUCTION["movie"] = """\
You are an autonomous intelligent agent. You can use actions to help people solve problems.
We detail name, description, input(parameters) and output(returns) of each action as follows:
Name: get_search_movie(movie_name)
Description: Search for a movie by name and return basic details
Parameters:
- movie_name (Type: string): The name of the movie to search for.
Returns:
- id : The ID of the found movie.
- overview : The overview description of the movie.
- title : The title of the movie.

Name: get_movie_details(movie_id)
Description: Get detailed information about a movie by ID
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- budget : The budget of the movie.
- genres : The genres of the movie.
- revenue : The revenue of the movie.
- vote_average : The average vote score of the movie.
- release_date : The release date of the movie.

Name: get_movie_production_companies(movie_id)
Description: Get the production companies of a movie by its ID
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- production_companies : The production companies of the movie.

Name: get_movie_production_countries(movie_id)
Description: Get the production countries of a movie by its ID
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- production_countries : The production countries of the movie.

Name: get_movie_cast(movie_id)
Description: Retrieve the list of the top 10 cast members from a movie by its ID.
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- cast : List of the top 10 cast members.

Name: get_movie_crew(movie_id)
Description: Retrieve the list of crew members (limited to 10) from a movie by its ID. The list primarily includes Director, Producer, and Writer roles.
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- crew : List of the top 10 of crew members

Name: get_movie_keywords(movie_id)
Description: Get the keywords associated with a movie by ID
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- keywords : The keywords associated with the movie.

Name: get_search_person(person_name)
Description: Search for a person by name.
Parameters:
- person_name (Type: string): The name of the person to search for.
Returns:
- id : The ID of the found person.
- name : The name of the person.

Name: get_person_details(person_id)
Description: Get detailed information about a person by ID
Parameters:
- person_id (Type: string): The ID of the person.
Returns:
- biography : The biography of the person.
- birthday : The birthday of the person.
- place_of_birth : The place of birth of the person.

Name: get_person_cast(person_id)
Description: Retrieve the top 10 movie cast roles of a person by their ID
Parameters:
- person_id (Type: string): The ID of the person.
Returns:
- cast : A list of movies where the person has acted, limited to top 10

Name: get_person_crew(person_id)
Description: Retrieve the top 10 movie crew roles of a person by their ID
Parameters:
- person_id (Type: string): The ID of the person.
Returns:
- crew : A list of movies where the person has participated as crew, limited to top 10

Name: get_person_external_ids(person_id)
Description: Get the external ids for a person by ID
Parameters:
- person_id (Type: string): The ID of the person.
Returns:
- imdb_id : The IMDB id of the person.
- facebook_id : The Facebook id of the person.
- instagram_id : The Instagram id of the person.
- twitter_id : The Twitter id of the person.

Name: get_movie_alternative_titles(movie_id)
Description: Get the alternative titles for a movie by ID
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- titles : The alternative titles of the movie.
- id : The ID of the movie.

Name: get_movie_translation(movie_id)
Description: Get the description translation for a movie by ID
Parameters:
- movie_id (Type: string): The ID of the movie.
Returns:
- translations : The description translation of the movie.
- id : The ID of the movie.

Name: check_valid_actions()
Description: Get supported actions for current tool.
Returns:
- actions (Type: array): Supported actions for current tool.

Name: finish(answer)
Description: Return an answer and finish the task
Parameters:
- answer (Type: ['string', 'number', 'array']): The answer to be returned

If you want to get the movie_id or person_id, Please call "get_search_person", "get_search_movie"! Do not generate it by yourself which maybe wrong. If you are finished, you will call "finish" action.\x20
Please refer to the format of examples below to solve the requested goal. Please provide your thought to solve the question. You should give the thought with no more than 3 sentences. You need to give your thought together with your action!

Your response must be in the format of:
Thought: [your thought]

Action: [your action] with Action Input: [your action input]

Here is an example:

Goal: When did the movie Scream 6 come out?
Thought: I need to know the ID of the movie Scream 6 first.

Action: get_search_movie with Action Input: {"movie_name": "Scream 6"}
Observation: {'id': 934433, 'overview': 'Following the latest Ghostface killings, the four survivors leave Woodsboro behind and start a fresh chapter.', 'title': 'Scream VI'}
Thought: I can get the release date from get_movie_details know.

Action: get_movie_details with Action Input: {"movie_id": "934433"}
Observation: {'budget': 35000000, 'genres': [{'id': 27, 'name': 'Horror'}, {'id': 53, 'name': 'Thriller'}, {'id': 9648, 'name': 'Mystery'}], 'revenue': 168961389, 'vote_average': 7.175, 'release_date': '2023-03-08'}
Thought: The release date is 2023-03-08.

Action: finish with Action Input: {"answer": "2023-03-08"}
Observation: 2023-03-08
"""

INSTRUCTION["todo"] = """\
You are an autonomous intelligent agent. You can use actions to help people solve problems.
We detail name, description, input(parameters) and output(returns) of each action as follows:
Name: get_user_current_date()
Description: Get the user's current date.
Returns:
The current date in 'YYYY-MM-DD' format.

Name: get_user_current_location()
Description: Get the user's current city.
Returns:
The user's current city.

Name: get_projects()
Description: Get all projects in the Todoist account
Returns:
- Array of objects with properties:
  - id (Type: string)
  - name (Type: string)
  - order (Type: integer)
  - color (Type: string)
  - is_favorite (Type: boolean)

Name: update_project(project_id, is_favorite)
Description: Update a project
Parameters:
- project_id (Type: string)
- is_favorite (Type: string, Enum: [True, False])
Returns:
Information of the updated project

Name: get_tasks(project_id)
Description: Get all tasks for a given project
Parameters:
- project_id (Type: string)
Returns:
- Array of objects with properties:
  - id (Type: string)
  - project_id (Type: ”string)
  - order (Type: integer)
  - content (Type: string): Name of the task.
  - is_completed (Type: boolean)
  - priority (Type: integer): Task priority from 1 (normal) to 4 (urgent).
  - due_date (Type: string): The due date of the task.

Name: get_task_description(task_id)
Description: Get the description of a specific task in the Todoist account.
Parameters:
- task_id (Type: string)
Returns:
- id (Type: string): Unique identifier of the task.
- content (Type: string): Name of the task.
- description (Type: string): Description of the task. Incluing the Place, Tips, etc.

Name: get_task_duration(task_id)
Description: Get the duration of a specific task in the Todoist account.
Parameters:
- task_id (Type: string)
Returns:
- id (Type: string)
- content (Type: string): Name of the task.
- duration (Type: string): Duration of the task in the format of 'amount(unit)'.

Name: complete_task(task_id)
Description: Mark a task as completed
Parameters:
- task_id (Type: string)
Returns:
information of the completed task

Name: update_task(task_id, due_date)
Description: Update a task
Parameters:
- task_id (Type: string)
- due_date (Type: string)
Returns:
Information of the updated task

Name: delete_task(task_id)
Description: Delete a specific task from the Todoist account.
Parameters:
- task_id (Type: string): Unique identifier of the task to delete.
Returns:
Information of the deleted task.

Name: check_valid_actions()
Description: Get supported actions for current tool.
Returns:
Supported actions for current tool.

Name: finish(answer)
Description: Call this action, when find the answer for the current task or complete essential operations.
Parameters:
- answer (Type: ['string', 'number', 'array']): If the task is a question answering task, this is the answer to be returned. If the task is an operation task, the answer in 'done'

If you want to get the project_id or task_id, please call "get_projects" or "get_tasks". Do not generate it by yourself which maybe wrong. If you are finished, you will call "finish" action.\x20
Please refer to the format of examples below to solve the requested goal. Please provide your thought to solve the question. You should give the thought with no more than 3 sentences. You need to give your thought together with your action!

Your response must be in the format of:
Thought: [your thought]

Action: [your action] with Action Input: [your action input]

Here is an example:

Goal: Is Prepare for history quiz a task of School project? Please answer yes or no.
Thought: To check whether Prepare for history quiz is a task of School project. I should first get the project id of School.

Action: get_projects with Action Input: {}
Observation: [{'id': '12345', 'order': 0, 'color': 'charcoal', 'name': 'School', 'is_favorite': false}]
Thought: From the result, the project id of School is 12345, then I can get all tasks of this project. And check whether Prepare for history quiz is in the result.

Action: get_tasks with Action Input: {"project_id": "12345"}
Observation: [{'id': '123451', 'order': 0, 'content': 'Prepare for history quiz', 'is_completed': false, 'priority': 1, 'due_date': '2030-10-10'}, {'id': '123452', 'order': 1, 'content': 'Prepare for math quiz', 'is_completed': false, 'priority': 1, 'due_date': '2030-11-10'}]
Thought: Prepare for history quiz is in the result, so it is a task of School project. I will call action: finish to terminate the conversation.

Action: finish with Action Input: {"answer": "yes"}
Observation: yes
"""

INSTRUCTION["academia"] = """\
You are an autonomous intelligent agent. You can use actions to help people solve problems.
We detail name, description, input(parameters) and output(returns) of each action as follows:
Name: loadPaperNet()
Description: Load PaperNet. In this net, nodes are papers and edges are citation relationships between papers.

Name: loadAuthorNet()
Description: Load AuthorNet. In this net, nodes are authors and edges are collaboration relationships between authors.

Name: neighbourCheck(graph, node)
Description: List the first-order neighbors connect to the node. In paperNet, neigbours are cited papers of the paper. In authorNet, neigbours are collaborators of the author.
Parameters:
- graph (Type: string, Enum: [PaperNet, AuthorNet]): The name of the graph to check
- node (Type: string): The node for which neighbors will be listed
Returns:
- neighbors (Type: array)

Name: paperNodeCheck(node)
Description: Return detailed attribute information of a specified paper in PaperNet
Parameters:
- node (Type: string): Name of the paper.
Returns:
- authors : The authors of the paper
- year : The puslished year of the paper
- venue : The published venue of the paper
- n_citation : The number of citations of the paper
- keywords : The keywords of the paper
- doc_type : The document type of the paper

Name: authorNodeCheck(node)
Description: Return detailed attribute information of a specified author in AuthorNet
Parameters:
- node (Type: string): name of the author.
Returns:
- name : The name of the author
- org : The organization of the author

Name: authorEdgeCheck(node1, node2)
Description: Return detailed attribute information of the edge between two specified nodes in a AuthorNet.
Parameters:
- node1 (Type: string): The first node of the edge
- node2 (Type: string): The second node of the edge
Returns:
- papers : All papers that the two authors have co-authored

Name: finish(answer)
Description: Return an answer and finish the task
Parameters:
- answer (Type: ['string', 'number', 'array']): The answer to be returned

You should call loadPaperNet or loadAuthorNet first! If you are finished, you will call "finish" action.
Please refer to the format of examples below to solve the requested goal. Please provide your thought to solve the question. You should give the thought with no more than 3 sentences. You need to give your thought together with your action!

Your response must be in the format of:
Thought: [your thought]

Action: [your action] with Action Input: [your action input]

Here is an example:

Goal: When was the paper Learning the Principle of Least Action with Reinforcement Learning. published?
Thought: The question is asking some basic information of a paper. I need to load the paper graph.

Action: loadPaperNet with Action Input: {}
Observation: PaperNet is loaded.
Thought: The question is asking the published date of a paper, we need to check the node from the PaperNet.

Action: paperNodeCheck with Action Input: {"node":"Learning the Principle of Least Action with Reinforcement Learning."}
Observation: {'year': 2021, 'venue': 'AAAI Spring Symposium - MLPS', 'n_citation': 0, 'keywords': [], 'doc_type': 'Conference'}
Thought: The published date of the paper is 2021.

Action: finish with Action Input: {"answer": "2021"}
Observation: 2021
"""

INSTRUCTION["sheet"] = """\
You are an autonomous intelligent agent. You can use actions to help people solve problems.
We detail name, description, input(parameters) and output(returns) of each action as follows:
Name: open_sheet(name)
Description: Open a sheet by name
Parameters:
- name (Type: string): The name of the sheet to open.
Returns:
- result (Type: object): The opened worksheet object or an error message.

Name: del_sheet(name)
Description: Deletes the specified sheet.
Parameters:
- name (Type: string): The name of the sheet to be deleted.
Returns:
- result (Type: object): Whether the operation was successful.

Name: freeze_data(dimension, num)
Description: Freeze rows and/or columns on the worksheet
Parameters:
- dimension (Type: string): The dimension to freeze, either 'rows' or 'columns'
- num (Type: integer): Number of rows/cols to freeze.
Returns:
- result (Type: object): Whether the operation was successful.

Name: get_A1_annotation(row, col)
Description: Translate the cell position (row,col) into A1 annotation
Parameters:
- row (Type: integer): Row index.
- col (Type: integer): Column index.
Returns:
- result (Type: string): The A1 notation of the cell or an error message.

Name: insert_cols(values_list, col_idx)
Description: Insert columns into sheet at specified column index
Parameters:
- values_list (Type: array[array[string]]): A list of lists, each list containing one column's values, which can be expressions
- col_idx (Type: integer): Start column to update. Defaults to 1.
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: insert_rows(values_list, row_idx)
Description: Insert rows into sheet at specified row index
Parameters:
- values_list (Type: array[array[string]]): A list of lists, each list containing one row's values, which can be expressions
- row_idx (Type: integer): Start row to update. Defaults to 1.
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: delete_batch_data(dimension, index_list)
Description: Delete a batch of data in the sheet
Parameters:
- dimension (Type: string): The dimension to delete, either 'row' or 'col'.
- index_list (Type: array[integer]): List of the indexes of rows/cols for deletion.
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: update_cell(position, value)
Description: Update the value of the cell
Parameters:
- position (Type: string): A1 notation of the cell position.
- value: The value to set.
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: update_cell_by_formula(start_position, end_position, position_list, result_position, operator)
Description: Update the value of the target cell by applying formulas on some specified cells. Note: Either specify position_list or start_position and end_position.
Parameters:
- start_position (Type: string): The starting position of the range. Default: 'B1'.
- end_position (Type: string): The ending position of the range. Default: 'D2'.
- position_list (Type: array[string]): A list of cell positions in A1 notation.
- result_position (Type: string): The position of the cell where the result of the formula will be stored in. Default: 'G2'.
- operator (Type: string): The operator to be applied on selected cells. Choose one from ['SUM', 'AVERAGE', 'COUNT', 'MAX', 'MIN', 'MINUS', 'PRODUCT'].
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: update_range(start_position, end_position, values_list)
Description: Update a range of the cells from a list
Parameters:
- start_position (Type: string): A1 notation of the start cell.
- end_position (Type: string): A1 notation of the end cell.
- values_list (Type: array[array[Any]]): List of values to be inserted, which can be expressions
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: sort_sheet_by_col(col_num, order)
Description: Sorts the current sheet using given sort orders
Parameters:
- col_num (Type: integer): The index of the sort column.
- order (Type: string): The sort order. Possible values are 'asc' or 'des'.
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: merge_cells(start_position, end_position)
Description: Merge cells in sheet
Parameters:
- start_position (Type: string): Starting cell position(top left) in A1 annotation.
- end_position (Type: string): Ending cell position(bottom right) in A1 annotation.
Returns:
- result (Type: object): The updated worksheet data or an error message.

Name: update_note(position, content)
Description: Update a note in a certain cell
Parameters:
- position (Type: string): cell position in A1 annotation.
- content (Type: string): The text note to insert.
Returns:
- result (Type: string): The updated note or an error message.

Name: get_all_values()
Description: Display all cell values in current sheet
Returns:
- result (Type: array[array[Any]]): Return all cell values or an error message.

Name: get_range_values(start_position, end_position)
Description: Returns a list of cell data from a specified range.
Parameters:
- start_position (Type: string): Starting cell position in A1 annotation.
- end_position (Type: string): Ending cell position in A1 annotation.
Returns:
- result (Type: array[array[Any]]): List of cell data from the specified range or an error message.

Name: get_cell_value(position)
Description: Get the value of a specific cell
Parameters:
- position (Type: string): Cell position in A1 annotation.
Returns:
- result : Cell value or an error message.

Name: get_value_by_formula(start_position, end_position, position_list, operator)
Description: Calculate a value applying formulas on specified cells. Note: Either specify position_list or start_position and end_position.
Parameters:
- start_position (Type: string): The starting position of the range. Default: 'B1'.
- end_position (Type: string): The ending position of the range. Default: 'D2'.
- position_list (Type: array[string]): A list of cell positions in A1 notation.
- operator (Type: string): The operator to be applied on selected cells. Choose one from ['SUM', 'AVERAGE', 'COUNT', 'MAX', 'MIN', 'MINUS', 'PRODUCT'].
Returns:
- result (Type: string): Calculated result or an error message.

Name: filter_cells(query, in_row, in_column)
Description: Find all cells matching the query, return all cells' position.
Parameters:
- query (Type: ['string', 're.RegexObject']): A string to match or compiled regular expression.
- in_row (Type: ['integer', 'None']): Row number to scope the search. Default is all rows
- in_column (Type: ['integer', 'None']): Column number to scope the search. Default is all columns
Returns:
- result (Type: array[string]): List of cell addresses that match the query or an error message.

Name: get_note(position)
Description: Get the note at the certain cell, or return empty string if the cell does not have a note.
Parameters:
- position (Type: string): Cell position in A1 annotation.
Returns:
- result (Type: string): Note content or an error message.

Name: finish()
Description: Return an answer and finish the task
Returns:
- result (Type: array[array[Any]]): Return all cell values or an error message.

Here are some common senses you may need:\x20
1.You should open sheet mentioned in goal before operating it
2.You should use A1 notation to display the cell position in the sheet.
3.The col and row are start with 1
4.freeze the first row before sort col

Please first open the sheet! Check the sheet content by get_all_values first! If you are finished, you will call "finish" action.
Please refer to the format of examples below to solve the requested goal. Please provide your thought to solve the question. You should give the thought with no more than 3 sentences. You need to give your thought together with your action!

Your response must be in the format of:
Thought: [your thought]

Action: [your action] with Action Input: [your action input]

Here is an example:

Goal: "Sheet90" saves the clothing inventory information, please delete items with price changed by more than 25%, update the price of other items.
Thought: I will complete the goal in "Sheet90".

Action: open_sheet with Action Input:{"name": "Sheet90"}
Observation: You have open the {sheet_name}
Thought: I need to retrieve the inventory from "Sheet90" to identify which items' price changes exceeding 25%

Action: get_all_values with Action Input: {}
Observation: [['Category', 'Brand', 'Size', 'Price', 'Stock', 'Price Update'], ['T-shirt', 'Nike', 'M', '25.00', '100', '20.00%'], ['Jeans', "Levi's", '32', '59.00', '150', '-10.00%'], ['Shoes', 'Adidas', '8', '99.00', '80', '-45.00%'], ['Bags', 'Louis Vuitton', 'Universal', '699.00', '20', '30.00%'], ['Watches', 'Omega', 'Universal', '999.00', '10', '56.00%']]
Thought: The items with price changes of more than 20% are "Shoes", "Bags" and "Watches", so I will delete the records for these items.

Action: delete_batch_data with Action Input: {"dimension": "row", "index_list": [3, 4, 5]}
Observation: [['Category', 'Brand', 'Size', 'Price', 'Stock', 'Price Update'], ['T-shirt', 'Nike', 'M', '25.00', '100', '20.00%'], ['Jeans', "Levi's", '32', '59.00', '150', '-10.00%']]
Thought: It seems delete successfully, the next step is to calculate the changed prices of remaining items by using the provided formula "PRODUCT" and we calculate "T-shirt" first.

Action: get_value_by_formula with Action Input: {"position_list": ["D2", "F2"], operator="PRODUCT"}
Observation: 5
Thought: Calculate the changed prices of "Jeans" by using a formula "PRODUCT".

Action: get_value_by_formula with Action Input: {"position_list": ["D3", "F3"], operator="PRODUCT"}
Observation: -5.9
Thought: We have calculated the changed price, we can update the price column at once

Action: update_range with Action Input: {"start_position": "D2", "end_position": "D3", values_list=[[25.00 + 5, 59.00 - 5.9]]}
Observation: [['Category', 'Brand', 'Size', 'Price', 'Stock', 'Price Update'], ['T-shirt', 'Nike', 'M', '30.00', '100', '20.00%'], ['Jeans', "Levi's", '32', '53.10', '150', '-10.00%']]
Thought: After I check the result, it seems update successfully. we could call "finish"

Action: finish with Action Input: {}
Observation: [['Category', 'Brand', 'Size', 'Price', 'Stock', 'Price Update'], ['T-shirt', 'Nike', 'M', '30.00', '100', '20.00%'], ['Jeans', "Levi's", '32', '53.10', '150', '-10.00%']]
"""


# ---------------------------------------------------------------------------------------------------------------
# Not AgentGym: the held-out PDDL env of this project (envs/pddl.py), AgentBoard's task (Ma et al. 2024) on
# pddlgym's problem files, in our own words. Its prompt lives here so that every text a model sees is in this
# module; its ack (LONG_ACK) and its client rule (first_action) are PDDLEnv's, declared on its class.
INSTRUCTION["pddlgym"] = """\
You are a robot that solves classical planning problems step by step. Each problem comes from one of three domains:

Gripper: a robot, Robby, moves balls between rooms with its two grippers (left and right). Actions:
  "move from <room> to <room>": Robby goes to another room.
  "pick <ball> in <room> with <gripper>": Robby, in the ball's room, picks the ball up with a free gripper.
  "drop <ball> in <room> with <gripper>": Robby puts down the ball held by that gripper in the room he is in.
Blocksworld: blocks stand on a table or on each other; one hand moves one clear block (nothing on top) at a time.
  "pick up <block>": take a clear block from the table (the hand must be empty).
  "put down <block>": put the held block on the table.
  "stack <block> on <block>": put the held block on a clear block.
  "unstack <block> from <block>": take a clear block off the block below it (the hand must be empty).
Ferry: a ferry carries one car at a time between locations.
  "sail from <location> to <location>": the ferry goes to another location.
  "board <car> at <location>": the car at the ferry's location drives onto the empty ferry.
  "debark <car> at <location>": the car on the ferry drives off at the ferry's location.
You can also use "check valid actions" to list the actions possible now.

Every round I give you an observation: the domain, the goal and the current state first, then the result of your \
last action. The task is done when every goal condition holds. Answer in the following format:

Thought:
<your reasoning>

Action:
<one action, exactly as above>"""
