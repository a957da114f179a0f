"""Instruction templates (English and Chinese) for every robot function, slot vocabularies,
fillers, and the canonical call text.

A :class:`Template` is a format string with slots:

- ``{obj}`` an object name (``red cup`` / ``红色杯子``), ``{pet}`` a pet word (``doggy`` / ``猫咪``);
- ``{loc}`` a place() location phrase, ``{place}`` a navigate_to() place, ``{bin}`` a waste bin;
- ``{contact}`` and ``{msg}`` for send_message(), ``{speed}`` for set_speed(), ``{gib}`` gibberish.

Its ``mode`` says where the object argument comes from: ``named`` (the text names it),
``deictic`` (the text says "that"/"这个": the argument is the most salient object in the image),
or ``text`` (the call does not depend on the image at all).

Object arguments are always the English canonical name (``'red cup'``), whatever the language of
the instruction, so the robot's downstream code sees one vocabulary; enum arguments are English by
definition; the send_message ``text`` argument is copied verbatim from the instruction (Chinese
text stays Chinese).

Template ids (``pick_up.en.03``) are stable: lists below are append-only, so held-out splits do not
move when templates are added (append new ones at the end of a list).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

LANGUAGES: tuple[str, ...] = ("en", "zh")

# name -> (token index, argument names); token indices match config/functions.yaml
FUNCTIONS: dict[str, tuple[int, tuple[str, ...]]] = {
    "pick_up": (0, ("object",)),
    "place": (1, ("object", "location")),
    "navigate_to": (2, ("place",)),
    "stop": (3, ()),
    "take_photo": (4, ()),
    "recycle": (5, ("item", "bin")),
    "water_plant": (6, ()),
    "feed_pet": (7, ("pet",)),
    "find_item": (8, ("item",)),
    "describe_scene": (9, ()),
    "send_message": (10, ("contact", "text")),
    "set_speed": (11, ("value",)),
    "no_action": (12, ()),
}
MODES: tuple[str, ...] = ("named", "deictic", "text")
NEXA_END = "<nexa_end>"


# ----------------------------------------------------------------------------- call text
def _format_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot format non-finite float {value!r}")
        text = repr(value)  # shortest round-trip form
        if "e" in text or "E" in text:
            text = f"{value:.6f}".rstrip("0")
        return text + "0" if text.endswith(".") else text if "." in text else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise ValueError(f"unsupported argument type {type(value).__name__} ({value!r})")


def format_call(token: int, args: tuple | list = ()) -> str:
    """Canonical answer text: ``<nexa_1>('blue book', 'shelf')<nexa_end>``, ``<nexa_3>()<nexa_end>``.

    Strings are single-quoted with ``\\\\`` and ``\\'`` escapes, args are joined by ``", "``,
    floats use their shortest form with at least one decimal (``0.5``, ``1.0``, ``0.25``),
    bools are ``True``/``False``. (A private copy for data generation; the function registry
    has the authoritative formatter, and the tests check that both agree.)
    """
    if isinstance(token, bool) or not isinstance(token, int) or token < 0:
        raise ValueError(f"token must be a non-negative int, got {token!r}")
    return f"<nexa_{token}>(" + ", ".join(_format_arg(a) for a in args) + ")" + NEXA_END


def call_text(function: str, args: tuple | list = ()) -> str:
    """:func:`format_call` by function name; checks the argument count."""
    try:
        token, names = FUNCTIONS[function]
    except KeyError:
        raise ValueError(f"unknown function {function!r}; known: {sorted(FUNCTIONS)}") from None
    if len(args) != len(names):
        raise ValueError(f"{function} takes {len(names)} args {names}, got {len(args)}: {args!r}")
    return format_call(token, args)


# ----------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    """One phrasing of one function in one language."""

    id: str  # '<function>.<lang>.<index>', stable
    function: str
    language: str
    text: str  # format string with slots
    mode: str  # 'named' | 'deictic' | 'text'
    fixed: tuple[tuple[str, Any], ...] = ()  # arguments the phrasing itself fixes ("full speed")

    @property
    def slots(self) -> frozenset[str]:
        """Slot names used by the text."""
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.text) if f)


# Source lists. A leading '@' marks a deictic phrasing; a (text, {arg: value}) pair fixes args.
_SOURCES: dict[str, dict[str, list]] = {
    "pick_up": {
        "en": [
            "pick up the {obj}",
            "grab the {obj}",
            "can you pick up the {obj}?",
            "could you grab the {obj} for me?",
            "please get the {obj}",
            "take the {obj}",
            "lift the {obj}",
            "hand me the {obj}",
            "I need the {obj}, pick it up",
            "yo, snag that {obj}",
            "would you mind picking up the {obj}?",
            "fetch the {obj}",
            "pick the {obj} up off the floor",
            "@pick that up",
            "@grab it",
            "@pick this up",
            "@grab the thing in front of you",
            "@can you pick up what you're looking at?",
            "@take that",
            "@get that for me",
            "@lift this one",
            "@pick up the object in front of you",
            "@snag that thing",
            "@could you grab whatever that is?",
            "@pick it up",
        ],
        "zh": [
            "把{obj}捡起来",
            "拿起{obj}",
            "帮我拿一下{obj}",
            "你能把{obj}拿起来吗？",
            "请拿起{obj}",
            "去拿{obj}",
            "把{obj}递给我",
            "抓起{obj}",
            "麻烦把{obj}拿起来",
            "我要{obj}，帮我拿过来",
            "拿一下那个{obj}",
            "捡一下地上的{obj}",
            "@把这个捡起来",
            "@拿起来",
            "@把它拿起来",
            "@帮我拿一下这个",
            "@把你面前的东西拿起来",
            "@拿那个",
            "@你能把这个拿起来吗？",
            "@抓住它",
            "@把眼前这个东西捡起来",
            "@拿一下这个东西",
            "@把那个拿给我",
            "@把这玩意儿捡起来",
        ],
    },
    "place": {
        "en": [
            "put the {obj} {loc}",
            "place the {obj} {loc}",
            "set the {obj} down {loc}",
            "can you put the {obj} {loc}?",
            "leave the {obj} {loc}",
            "move the {obj} {loc}",
            "drop the {obj} {loc}",
            "the {obj} goes {loc}",
            "please set the {obj} {loc}",
            "I want the {obj} {loc}",
            "stick the {obj} {loc}",
            "could you place the {obj} {loc} for me?",
            "@put it {loc}",
            "@put that {loc}",
            "@place this {loc}",
            "@set it down {loc}",
            "@leave that {loc}",
            "@move this {loc}",
            "@drop it {loc}",
            "@this goes {loc}",
            "@can you put that {loc}?",
            "@put the thing you're looking at {loc}",
            "@stick it {loc}",
            "@put what's in front of you {loc}",
        ],
        "zh": [
            "把{obj}放到{loc}",
            "把{obj}放在{loc}",
            "请把{obj}搁到{loc}",
            "{obj}放{loc}",
            "你能把{obj}放到{loc}吗？",
            "帮我把{obj}放到{loc}",
            "把{obj}挪到{loc}",
            "把{obj}摆到{loc}",
            "麻烦把{obj}放回{loc}",
            "{obj}应该放在{loc}",
            "将{obj}放置到{loc}",
            "把{obj}拿到{loc}放好",
            "@把它放到{loc}",
            "@把这个放在{loc}",
            "@放到{loc}",
            "@把这个东西搁{loc}",
            "@你能把它放到{loc}吗？",
            "@帮我把这个放{loc}",
            "@把那个挪到{loc}",
            "@把眼前这个放到{loc}",
            "@这个放{loc}",
            "@把你面前的东西放到{loc}",
            "@把它摆到{loc}",
            "@把这玩意儿放到{loc}",
        ],
    },
    "navigate_to": {
        "en": [
            "go to the {place}",
            "navigate to the {place}",
            "head to the {place}",
            "drive to the {place}",
            "can you go to the {place}?",
            "move to the {place}",
            "please go over to the {place}",
            "get yourself to the {place}",
            "go back to the {place}",
            "could you head over to the {place}?",
            "roll over to the {place}",
            "make your way to the {place}",
            "off to the {place} you go",
            ("go charge your battery", {"place": "charging_dock"}),
            ("go check who's at the door", {"place": "front_door"}),
            "come to the {place}",
        ],
        "zh": [
            "去{place}",
            "到{place}去",
            "导航到{place}",
            "你去一下{place}",
            "请前往{place}",
            "移动到{place}",
            "能去{place}吗？",
            "走到{place}",
            "快去{place}",
            "回{place}",
            "去{place}看看",
            "开到{place}",
            ("去充电吧", {"place": "charging_dock"}),
            ("去门口看看是谁", {"place": "front_door"}),
            "你到{place}等我",
        ],
    },
    "stop": {
        "en": [
            "stop",
            "halt",
            "freeze",
            "stop moving",
            "stop right there",
            "hold on, stop",
            "whoa whoa whoa, stop",
            "that's enough, stop",
            "don't move",
            "cease all motion",
            "emergency stop",
            "stop what you're doing",
            "hit the brakes",
            "stay still",
        ],
        "zh": [
            "停",
            "停下",
            "停下来",
            "别动",
            "站住",
            "停止",
            "不要动了",
            "停一下",
            "紧急停止",
            "停止所有动作",
            "先停一停",
            "刹车",
            "够了，停下吧",
        ],
    },
    "take_photo": {
        "en": [
            "take a photo",
            "take a picture",
            "snap a photo",
            "can you take a pic?",
            "capture an image",
            "say cheese",
            "photograph this",
            "take a snapshot",
            "grab a picture of this",
            "get a shot of that",
            "could you snap a picture for me?",
            "picture time",
            "take a photo of what you see",
        ],
        "zh": [
            "拍张照片",
            "拍照",
            "照张相",
            "帮我拍一张",
            "拍一下",
            "来张照片",
            "你能拍张照吗？",
            "给这个拍个照",
            "咔嚓一张",
            "拍个照片留念",
            "用相机拍一下",
            "拍下来",
            "把眼前的画面拍下来",
        ],
    },
    "recycle": {
        "en": [
            "throw away the {obj}",
            "recycle the {obj}",
            "put the {obj} in the right bin",
            "get rid of the {obj}",
            "dispose of the {obj}",
            "toss the {obj}",
            "can you bin the {obj}?",
            "throw the {obj} out",
            "the {obj} is garbage, throw it away",
            "sort the {obj} into the correct bin",
            "put the {obj} in the {bin}",
            "throw the {obj} into the {bin}",
            "@throw this away",
            "@put it in the right bin",
            "@recycle this",
            "@toss that",
            "@get rid of it",
            "@which bin does this go in? put it there",
            "@throw that out",
            "@dispose of this properly",
            "@bin it",
            "@put this in the correct bin",
            "@put this in the {bin}",
            "@this is rubbish, deal with it",
        ],
        "zh": [
            "把{obj}扔掉",
            "回收{obj}",
            "把{obj}扔进对应的垃圾桶",
            "处理掉{obj}",
            "把{obj}丢了",
            "把{obj}分类扔掉",
            "{obj}不要了，扔了吧",
            "帮我把{obj}扔了",
            "把{obj}放进正确的垃圾桶",
            "把{obj}扔进{bin}",
            "把{obj}放到{bin}里",
            "@把这个扔掉",
            "@把它扔进正确的垃圾桶",
            "@回收这个",
            "@扔了它",
            "@这个该扔哪个桶？扔进去",
            "@把这个丢了",
            "@帮我处理掉这个",
            "@把它分类扔掉",
            "@这个不要了",
            "@把这个放进对应的垃圾桶",
            "@把这个扔进{bin}",
            "@这是垃圾，处理一下",
        ],
    },
    "water_plant": {
        "en": [
            "water the plant",
            "give the plant some water",
            "the plant looks thirsty",
            "please water the plant",
            "time to water the plant",
            "the plant needs water",
            "could you water the plant for me?",
            "hydrate the plant",
            "sprinkle some water on the plant",
            "don't forget to water the plant",
            "@can you water this?",
            "@water it",
            "@give this a drink",
            "@this looks dry, water it",
        ],
        "zh": [
            "给植物浇水",
            "给花浇点水",
            "植物该浇水了",
            "帮我浇一下这盆植物",
            "去浇一下花",
            "能给植物浇水吗？",
            "别忘了浇花",
            "给这盆绿植浇水",
            "盆栽有点干了，浇点水",
            "@浇浇水",
            "@这盆花渴了",
            "@给它浇点水",
            "@浇水",
            "@给这个浇浇水吧",
        ],
    },
    "feed_pet": {
        "en": [
            "feed the {pet}",
            "give the {pet} some food",
            "the {pet} is hungry",
            "can you feed the {pet}?",
            "time to feed the {pet}",
            "please give the {pet} its dinner",
            "put some food out for the {pet}",
            "the {pet} needs breakfast",
            "@feed it",
            "@feed the pet",
            "@it looks hungry, give it some food",
            "@feed this little guy",
            "@can you feed the animal?",
            "@give that one something to eat",
            "@feeding time!",
            "@the pet needs food",
        ],
        "zh": [
            "喂{pet}",
            "给{pet}喂食",
            "{pet}饿了",
            "喂一下{pet}",
            "给{pet}一点吃的",
            "该喂{pet}了",
            "你能喂{pet}吗？",
            "给{pet}准备饭",
            "@喂它",
            "@喂一下宠物",
            "@它饿了，喂点吃的",
            "@给它点吃的",
            "@给宠物喂食",
            "@喂喂这个小家伙",
            "@该吃饭了，喂一下它",
            "@给这只动物喂点东西",
        ],
    },
    "find_item": {
        "en": [
            "find the {obj}",
            "help me find my {obj}",
            "where is my {obj}?",
            "can you look for the {obj}?",
            "I lost my {obj}",
            "search for the {obj}",
            "have you seen my {obj}?",
            "locate the {obj}",
            "I can't find my {obj} anywhere",
            "go find the {obj}",
            "track down my {obj}",
            "@find another one of these",
            "@I lost one of these, can you find it?",
            "@help me look for this thing",
            "@find something like this",
            "@where's the other one like this?",
            "@search for one of these",
            "@can you find me one like that?",
            "@look for this",
            "@I need another one of those, go find it",
        ],
        "zh": [
            "找一下{obj}",
            "帮我找找我的{obj}",
            "我的{obj}在哪里？",
            "你能找到{obj}吗？",
            "我的{obj}丢了",
            "搜索一下{obj}",
            "你见过我的{obj}吗？",
            "去找{obj}",
            "{obj}不见了，帮我找找",
            "@帮我找找这个",
            "@再找一个这样的",
            "@我丢了一个这个，帮我找找",
            "@找一个跟这个一样的",
            "@帮我找找这种东西",
            "@还有一个这样的在哪？",
            "@找找这个东西",
            "@去找一个这个",
        ],
    },
    "describe_scene": {
        "en": [
            "describe the scene",
            "describe what you see",
            "tell me what you see",
            "what can you see right now? describe it",
            "give me a description of your surroundings",
            "describe your view",
            "paint me a picture of what's around",
            "explain what's in front of the camera",
            "what are you looking at? tell me about it",
            "narrate what you see",
            "describe the room",
            "give me a rundown of what's around you",
            "tell me about the scene",
        ],
        "zh": [
            "描述一下场景",
            "说说你看到了什么",
            "你看到了什么？",
            "描述你眼前的画面",
            "告诉我周围有什么",
            "讲讲你面前的情况",
            "描述一下周围环境",
            "你现在看到什么了？",
            "把你看到的说一下",
            "形容一下眼前的景象",
            "介绍一下你看到的东西",
            "给我描述一下这个房间",
            "说一下摄像头里有什么",
        ],
    },
    "send_message": {
        "en": [
            "text {contact}: {msg}",
            "send a message to {contact} saying {msg}",
            "tell {contact} that {msg}",
            "message {contact}: {msg}",
            "send {contact} a text: {msg}",
            "can you text {contact} '{msg}'",
            "let {contact} know {msg}",
            "shoot {contact} a message saying {msg}",
            "drop {contact} a line: {msg}",
            "write to {contact}: {msg}",
            "please send {contact} this: {msg}",
            "send a text to {contact} that says {msg}",
            "could you message {contact} and say {msg}",
            "ping {contact} with {msg}",
        ],
        "zh": [
            "给{contact}发消息：{msg}",
            "告诉{contact}：{msg}",
            "给{contact}发一条信息说{msg}",
            "跟{contact}说一声{msg}",
            "帮我给{contact}发个消息：{msg}",
            "发消息给{contact}，内容是{msg}",
            "通知{contact}：{msg}",
            "给{contact}留言：{msg}",
            "发微信给{contact}：{msg}",
            "传个话给{contact}：{msg}",
            "给{contact}发：{msg}",
            "麻烦告诉{contact}，{msg}",
            "发短信给{contact}说{msg}",
        ],
    },
    "set_speed": {
        "en": [
            "set the speed to {speed}",
            "go at {speed}",
            "change your speed to {speed}",
            "move at {speed} speed",
            "adjust speed to {speed}",
            "can you run at {speed}?",
            "speed: {speed}",
            "please use {speed} speed",
            "I want you at {speed} speed",
            "throttle to {speed}",
            "make your speed {speed}",
            "limit your speed to {speed}",
            ("full speed ahead", {"value": 1.0}),
            ("go at half speed", {"value": 0.5}),
            ("quarter speed", {"value": 0.25}),
            ("max speed!", {"value": 1.0}),
            "drive at {speed} of your top speed",
        ],
        "zh": [
            "把速度设为{speed}",
            "速度调到{speed}",
            "用{speed}的速度前进",
            "调整速度到{speed}",
            "速度设置成{speed}",
            "以{speed}的速度移动",
            "你能把速度调成{speed}吗？",
            "把速度改为{speed}",
            "开到{speed}的速度",
            "速度：{speed}",
            "将速度限制在{speed}",
            "速度调整为{speed}",
            ("全速前进", {"value": 1.0}),
            ("半速行驶", {"value": 0.5}),
            ("开到最大速度", {"value": 1.0}),
        ],
    },
    "no_action": {
        "en": [
            "what's the weather like today?",
            "tell me a joke",
            "who won the game last night?",
            "fly to the moon",
            "make me a sandwich",
            "can you do my taxes?",
            "sing me a song",
            "what is the meaning of life?",
            "climb up the wall",
            "drive me to the airport",
            "lift the whole house",
            "teleport to paris",
            "um",
            "hmm, never mind",
            "nothing, forget it",
            "I was just talking to myself",
            "blue purple seventeen",
            "throw the cat in the trash",
            "recycle the dog",
            "how old are you?",
            "what's two plus two?",
            "play some jazz",
            "book a flight to tokyo",
            "do a backflip",
            "sorry, wrong robot",
            "{gib}",
            "uh... {gib}",
        ],
        "zh": [
            "今天天气怎么样？",
            "讲个笑话",
            "昨晚比赛谁赢了？",
            "飞到月球上去",
            "给我做个三明治",
            "帮我报税",
            "唱首歌",
            "生命的意义是什么？",
            "爬上墙",
            "开车送我去机场",
            "把房子举起来",
            "瞬间移动到巴黎",
            "嗯……",
            "算了，没事",
            "没什么，忘了吧",
            "我在自言自语",
            "蓝色紫色十七",
            "把猫扔进垃圾桶",
            "回收这只狗",
            "你几岁了？",
            "二加二等于几？",
            "放点爵士乐",
            "订一张去东京的机票",
            "翻个跟头",
            "不好意思，叫错了",
            "{gib}",
            "呃……{gib}",
        ],
    },
}

# Functions whose scene must contain a specific kind of target.
OBJECT_FUNCTIONS: tuple[str, ...] = ("pick_up", "place", "recycle", "find_item")  # arg from an item
IMAGE_FUNCTIONS: tuple[str, ...] = (*OBJECT_FUNCTIONS, "feed_pet", "water_plant")


def _build_templates() -> tuple[Template, ...]:
    out = []
    for function, by_lang in _SOURCES.items():
        if function not in FUNCTIONS:
            raise RuntimeError(f"templates for unknown function {function!r}")
        for lang, entries in by_lang.items():
            for i, entry in enumerate(entries):
                text, fixed = (entry, {}) if isinstance(entry, str) else entry
                deictic = text.startswith("@")
                text = text.lstrip("@")
                if deictic:
                    mode = "deictic"
                elif function in IMAGE_FUNCTIONS:
                    mode = "named"
                else:
                    mode = "text"
                out.append(
                    Template(
                        f"{function}.{lang}.{i:02d}", function, lang, text, mode, tuple(sorted(fixed.items()))
                    )
                )
    return tuple(out)


TEMPLATES: tuple[Template, ...] = _build_templates()
TEMPLATES_BY_ID: dict[str, Template] = {t.id: t for t in TEMPLATES}


def templates_for(function: str, language: str) -> list[Template]:
    """All templates of one function and language, in id order."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function {function!r}; known: {sorted(FUNCTIONS)}")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected one of {LANGUAGES}")
    return [t for t in TEMPLATES if t.function == function and t.language == language]


# ----------------------------------------------------------------------------- slot vocabularies
# enum value -> {lang: surface forms}; the first form is the canonical one
LOCATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "table": {"en": ("on the table", "on the dining table"), "zh": ("桌子上", "餐桌上")},
    "shelf": {"en": ("on the shelf", "up on the shelf"), "zh": ("架子上", "书架上")},
    "counter": {"en": ("on the counter", "on the kitchen counter"), "zh": ("台面上", "厨房台面上")},
    "floor": {"en": ("on the floor", "on the ground"), "zh": ("地上", "地板上")},
    "box": {"en": ("in the box", "into the box"), "zh": ("箱子里", "盒子里")},
}
PLACES: dict[str, dict[str, tuple[str, ...]]] = {
    "kitchen": {"en": ("kitchen",), "zh": ("厨房",)},
    "living_room": {"en": ("living room", "lounge"), "zh": ("客厅",)},
    "bedroom": {"en": ("bedroom",), "zh": ("卧室", "睡房")},
    "bathroom": {"en": ("bathroom", "restroom"), "zh": ("卫生间", "浴室", "洗手间")},
    "office": {"en": ("office", "study"), "zh": ("办公室", "书房")},
    "charging_dock": {"en": ("charging dock", "charger", "charging station"), "zh": ("充电桩", "充电座")},
    "front_door": {"en": ("front door", "entrance"), "zh": ("前门", "大门", "门口")},
}
CONTACTS: dict[str, dict[str, tuple[str, ...]]] = {
    "mom": {"en": ("mom", "mum", "my mom"), "zh": ("妈妈", "老妈", "我妈")},
    "dad": {"en": ("dad", "my dad", "father"), "zh": ("爸爸", "老爸", "我爸")},
    "alice": {"en": ("Alice",), "zh": ("爱丽丝", "Alice")},
    "bob": {"en": ("Bob",), "zh": ("鲍勃", "Bob")},
    "office": {"en": ("the office", "my office"), "zh": ("办公室",)},
}
BIN_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "recycling": {"en": ("recycling bin", "recycling"), "zh": ("可回收垃圾桶", "回收桶")},
    "compost": {"en": ("compost bin", "compost"), "zh": ("厨余垃圾桶", "堆肥桶")},
    "trash": {"en": ("trash", "garbage bin", "trash can"), "zh": ("其他垃圾桶", "垃圾桶")},
}
PET_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "dog": {"en": ("dog", "doggy", "puppy", "pup"), "zh": ("狗", "小狗", "狗狗")},
    "cat": {"en": ("cat", "kitty", "kitten"), "zh": ("猫", "小猫", "猫咪")},
}
MESSAGES: dict[str, tuple[str, ...]] = {
    "en": (
        "I'll be home late tonight",
        "dinner is ready",
        "can you pick up some milk?",
        "I'm on my way",
        "running ten minutes late",
        "happy birthday!",
        "call me when you can",
        "the package arrived",
        "don't forget the keys",
        "see you at six",
        "I love you",
        "the meeting moved to 3pm",
        "we're out of coffee",
        "good night",
        "the dog has been fed",
        "please bring an umbrella",
        "I'm at the front door",
        "thanks for everything",
        "lunch at noon?",
        "the robot says hi",
        "I think I left the oven on",
        "let's watch a movie tonight",
        "don't wait up for me",
        "the back door is unlocked",
    ),
    "zh": (
        "我今晚会晚点回家",
        "晚饭做好了",
        "记得买牛奶",
        "我在路上了",
        "我要迟到十分钟",
        "生日快乐！",
        "有空给我回电话",
        "快递到了",
        "别忘了带钥匙",
        "六点见",
        "我爱你",
        "会议改到下午三点",
        "家里没咖啡了",
        "晚安",
        "狗已经喂过了",
        "出门记得带伞",
        "我到门口了",
        "谢谢你",
        "中午一起吃饭吗",
        "机器人向你问好",
        "烤箱好像没关",
        "今晚一起看电影吧",
        "不用等我了",
        "后门没锁",
    ),
}
SPEEDS: tuple[float, ...] = tuple(k / 20 for k in range(2, 21))  # 0.1, 0.15, ..., 1.0

_EN_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_EN_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ZH_DIGITS = "零一二三四五六七八九"


def en_number(n: int) -> str:
    """English words for 0..100 (``35 -> 'thirty-five'``)."""
    if not 0 <= n <= 100:
        raise ValueError(f"en_number supports 0..100, got {n}")
    if n == 100:
        return "one hundred"
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + ("" if ones == 0 else "-" + _EN_ONES[ones])


def zh_number(n: int) -> str:
    """Chinese numerals for 0..100 (``35 -> '三十五'``, ``10 -> '十'``)."""
    if not 0 <= n <= 100:
        raise ValueError(f"zh_number supports 0..100, got {n}")
    if n == 100:
        return "一百"
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + ("" if ones == 0 else _ZH_DIGITS[ones])


def speed_forms(value: float, language: str) -> list[str]:
    """Every spoken form of a speed fraction: ``35%``, ``35 percent``, ``0.35``, ``百分之三十五``..."""
    pct = int(round(value * 100))
    decimal = _format_arg(float(value))
    if language == "en":
        return [f"{pct}%", f"{pct} percent", decimal, f"{en_number(pct)} percent"]
    forms = [f"百分之{zh_number(pct)}", f"{pct}%", decimal]
    if pct % 10 == 0 and pct < 100:
        forms.append(f"{zh_number(pct // 10)}成")
    return forms


def speed_phrase(value: float, language: str, rng: np.random.Generator) -> str:
    """A random spoken form of a speed fraction (one of :func:`speed_forms`)."""
    forms = speed_forms(value, language)
    return forms[int(rng.integers(0, len(forms)))]


_GIB_LETTERS = "bcdfghjklmnpqrstvwxz"
_GIB_VOWELS = "aeiouy"
_GIB_HANZI = "的一是在不了有和人这中大为上个国我以要他时来们生到作地于出就分对成会可主年同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如化高自二理起小现实加量都两体制机当使点从业本"


def gibberish(language: str, rng: np.random.Generator) -> str:
    """A meaningless utterance: pseudo-words or keyboard mash (en), random characters (zh)."""
    if language == "en":
        if rng.random() < 0.3:
            return "".join(rng.choice(list("asdfghjklqwertyuiopzxcvbnm"), size=int(rng.integers(4, 10))))
        words = []
        for _ in range(int(rng.integers(1, 4))):
            syl = int(rng.integers(1, 4))
            words.append(
                "".join(
                    str(rng.choice(list(_GIB_LETTERS))) + str(rng.choice(list(_GIB_VOWELS)))
                    for _ in range(syl)
                )
            )
        return " ".join(words)
    n = int(rng.integers(2, 7))
    return "".join(rng.choice(list(_GIB_HANZI), size=n))


# ----------------------------------------------------------------------------- fillers and styles
PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("hey robot, ", "robot, ", "okay, ", "um, ", "so, ", "hey, ", "excuse me, ", "buddy, "),
    "zh": ("机器人，", "嗯，", "那个，", "小机器人，", "哎，", "你好，"),
}
SUFFIXES: dict[str, tuple[str, ...]] = {
    "en": (" please", ", thanks", ", thank you", " right away", " when you get a chance"),
    "zh": ("，谢谢", "，谢谢你", "，麻烦了", "，快点"),
}
_TRAILING = ".!?。！？…"
_QUESTION_END = ("?", "？", "吗", "呢")


def normalise(text: str) -> str:
    """Lower-case, punctuation- and space-free form, used to compare phrasings for leaks."""
    return re.sub(r"[\s.,!?;:'\"…，。！？、：；（）()]+", "", text.lower())


def decorate(template_text: str, language: str, rng: np.random.Generator) -> tuple[str, bool]:
    """Add a random prefix/suffix and casing style to a template's format string.

    Returns ``(format_string, lower)``: when ``lower`` is true the caller must lower-case the slot
    values too (an ASR-like all-lowercase, no final punctuation style), so that copied arguments
    such as a message stay substrings of the instruction.
    """
    text = template_text
    if rng.random() < 0.3:
        text = PREFIXES[language][int(rng.integers(0, len(PREFIXES[language])))] + text
    if (
        rng.random() < 0.25
        and not template_text.rstrip().endswith(_QUESTION_END)
        and "{msg}" not in template_text
    ):
        text = text.rstrip(_TRAILING) + SUFFIXES[language][int(rng.integers(0, len(SUFFIXES[language])))]
    lower = False
    r = rng.random()
    if language == "en":
        if r < 0.3:
            text = text[:1].upper() + text[1:]
        elif r < 0.5:
            lower = True
            text = text.lower()
            if not text.endswith("}"):
                text = text.rstrip(_TRAILING)
    elif r < 0.2 and not text.endswith("}"):
        text = text.rstrip(_TRAILING)
    return text, lower


# ----------------------------------------------------------------------------- what templates produce
def _alternation(values: Iterable[str]) -> str:
    forms = sorted({normalise(v) for v in values}, key=lambda v: (-len(v), v))
    return "(?:" + "|".join(re.escape(v) for v in forms) + ")"


def _slot_patterns(language: str) -> dict[str, str]:
    """Regex (over normalised text, see :func:`normalise`) of every value each slot can take in ``language``."""
    from .world import all_combos, object_name

    objects = {
        object_name(c, col, language, zh_style=s)
        for c, col in all_combos()
        for s in range(3 if language == "zh" else 1)
    }

    def forms(vocab: dict[str, dict[str, tuple[str, ...]]]) -> list[str]:
        return [f for by_lang in vocab.values() for f in by_lang[language]]

    if language == "en":
        # Pseudo-words only: keyboard mash (uniform random letters) spells any 4..9-letter word
        # with probability 26**-n, which says nothing about phrasings.
        gib = "(?:[" + _GIB_LETTERS + "][" + _GIB_VOWELS + "]){1,9}"
    else:
        gib = "[" + re.escape(_GIB_HANZI) + "]{2,6}"
    return {
        "obj": _alternation(objects),
        "loc": _alternation(forms(LOCATIONS)),
        "place": _alternation(forms(PLACES)),
        "contact": _alternation(forms(CONTACTS)),
        "bin": _alternation(forms(BIN_WORDS)),
        "pet": _alternation(forms(PET_WORDS)),
        "msg": _alternation(MESSAGES[language]),
        "speed": _alternation(f for v in SPEEDS for f in speed_forms(v, language)),
        "gib": gib,
    }


@cache
def template_regex(template_id: str) -> re.Pattern[str]:
    """A regex over normalised text (:func:`normalise`) that matches every instruction the template can
    produce: any slot value of the world's vocabularies, any :func:`decorate` prefix, suffix,
    casing and final punctuation (a superset of what the generator draws)."""
    t = TEMPLATES_BY_ID[template_id]
    slots = _slot_patterns(t.language)
    parts = []
    for literal, name, _, _ in string.Formatter().parse(t.text):
        parts.append(re.escape(normalise(literal)))
        if name:
            parts.append(slots[name])
    prefix = _alternation(PREFIXES[t.language])
    suffix = _alternation(SUFFIXES[t.language])
    return re.compile(f"{prefix}?{''.join(parts)}{suffix}?")


def templates_producing(text: str, language: str | None = None) -> list[str]:
    """Ids of the templates (training and held-out alike) that can produce ``text``, compared
    after :func:`normalise`; ``language`` limits the search to that language's templates.

    Gibberish slots match pseudo-words (English) and the Chinese noise characters, but not
    English keyboard mash, whose uniform random letters could spell any short word."""
    norm = normalise(text)
    return [
        t.id
        for t in TEMPLATES
        if (language is None or t.language == language) and template_regex(t.id).fullmatch(norm)
    ]
