"""Query strings for tokenizer parity: what people type, and what breaks tokenizers.

``corpus(n)`` gives n distinct strings, the same ones every run: captions in
English and Chinese, punctuation runs, numbers, emoji (with skin tones, ZWJ
sequences and flags), accented and decomposed letters, HTML entities (also
double-escaped), mojibake, curly quotes and ligatures, full-width forms,
traditional characters, Japanese, Korean, Cyrillic, Greek, Arabic, Hebrew,
Thai and Devanagari, mixed scripts, odd whitespace and control characters,
and queries far longer than any context length.
"""

from __future__ import annotations

import random

WORDS_EN = ("a photo of the cat dog beach sunset red blue green car bike child birthday cake snow mountain "
            "lake river city street night lights family dinner wedding dress flower garden kayak boat "
            "receipt screenshot whiteboard sign old grandma's it's don't we're they've I'm you'll she'd "
            "New York Lisbon 2019 summer winter golden hair girl smiling running jumping").split()
WORDS_ZH = ("金色 头发 的 小姐姐 红色 圆形 猫 狗 海滩 日落 生日 蛋糕 雪山 湖 城市 夜景 家人 晚餐 婚礼 花园 "
            "皮划艇 收据 截图 白板 奶奶 夏天 冬天 上海 北京 香港 台北 照片").split()
WORDS_ZH_TRAD = ("金色頭發 頭髮 紅色 圓形 貓 狗 海灘 日落 生日蛋糕 雪山 湖 城市 夜景 家人 晚餐 婚禮 花園 "
                 "收據 截圖 白板 奶奶 夏天 冬天 臺北 臺灣 照片 樂園 電車 學校 龍").split()
OTHER = ("東京 写真 ねこ カタカナ 고양이 사진 바다 кошка фото море γάτα φωτογραφία قطة صورة חתול תמונה "
         "แมว รูปภาพ बिल्ली तस्वीर Ελλάδα Россия").split()
EMOJI = ["😀", "🐱", "🎂", "👍🏽", "👨‍👩‍👧‍👦", "🇵🇹", "❤️", "🏖️", "✨", "🐈‍⬛", "1️⃣", "🧑🏻‍🦰"]
ACCENTS = ["café", "cafe\u0301", "naïve", "Zürich", "São Paulo", "Ångström", "crème brûlée", "Dvořák", "ﬁne",
           "ﬂower", "Œuvre", "straße", "İstanbul", "ǅemal", "Ⅻ", "½", "²", "µ"]
HTML = ["&amp;", "&amp;amp;", "&lt;b&gt;", "&quot;hi&quot;", "&#39;", "&#x1F431;", "&nbsp;", "&copy;", "&eacute;",
        "&hellip;", "&bogus;", "& amp;", "&#0;", "&#xD800;", "&#1234567;"]
MOJIBAKE = ["cafÃ©", "Ã¼ber", "â€œquotedâ€\x9d", "donâ€™t", "æ—¥æœ¬", "Ã©tÃ©"]
QUOTES = ["“quoted”", "‘single’", "«guillemets»", "„German“", "it’s", "— dash –", "…", "「引号」", "『书名』"]
FULLWIDTH = ["ＡＢＣ", "ｈｅｌｌｏ", "１２３", "！？", "，。；：", "（括号）", "【方括号】", "％", "＃标签", "ｶﾀｶﾅ"]
PUNCT = ["!!!", "???", "...", "--", "#hashtag", "@user", "https://example.com/a?b=c&d=e", "e-mail", "C++",
         "$100", "50%", "3.14", "1,000,000", "a/b\\c", "(x)", "[y]", "{z}", "<tag>", "~~", "|pipe|", "`code`",
         "_under_score_", "*bold*", "'quoted'", "\"double\"", "semi;colon", "a:b"]
NUMBERS = ["2019", "0", "007", "12:30", "2019-06-01", "3rd", "1st", "100km", "٣", "〇一二", "五月", "Ⅳ", "⑤"]
SPACES = ["\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u200b", "\u200d", "\ufeff", "  ", "\x0b", "\x1c",
          "\u2028", "\x85"]
CONTROL = ["\x00", "\x07", "\x1b[31m", "\x7f", "\u0301", "\ufffd", "\ue000", "\U0010ffff"]
SPECIAL = ["<|endoftext|>", "<|startoftext|>", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>",
           "<pad>", "<unk>", "</w>"]

POOLS = (WORDS_EN, WORDS_ZH, WORDS_ZH_TRAD, OTHER, EMOJI, ACCENTS, HTML, MOJIBAKE, QUOTES, FULLWIDTH, PUNCT,
         NUMBERS, SPECIAL)
SEPARATORS = (" ", " ", " ", "", ", ", "，", "、", " - ")

HAND_WRITTEN = [
    "", " ", "a", "A", "I", "THE CAT", "The Cat", "a photo of a cat", "a photo of a dog on the beach",
    "金色頭發的小姐姐", "金色头发的小姐姐", "紅色的圓形", "红色的圆形", "birthday cake 生日蛋糕",
    "the red kayak", "beach in Lisbon, summer 2019", "grandma's 80th birthday!!!", "DON'T STOP",
    "'s 't 're 've 'm 'll 'd", "i'M", "we'RE", "o'clock", "rock'n'roll", "cats' toys",
    "😀😀😀", "🐱 cat", "cat🐱dog", "word" * 100, "x" * 500, "好" * 300, "a " * 200, "ab " * 150,
    "&amp;" * 50, "the " * 80 + "end", "星巴克 starbucks 收據", "iPhone 12 Pro Max", "ÆØÅ æøå",
    "Ｓｔａｒｂｕｃｋｓ", "Mötley Crüe", "ﬁnal ﬂight", "résumé", "\u00e9\u0301", "e\u0301\u0301",
]


def _phrase(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 9)):
        pool = POOLS[rng.randrange(len(POOLS))]
        parts.append(pool[rng.randrange(len(pool))])
        parts.append(SEPARATORS[rng.randrange(len(SEPARATORS))])
    text = "".join(parts).strip()
    roll = rng.random()
    if roll < 0.15:
        text = rng.choice(SPACES).join([text, rng.choice(SPACES)])
    elif roll < 0.22:
        spot = rng.randrange(len(text) + 1)
        text = text[:spot] + rng.choice(CONTROL) + text[spot:]
    elif roll < 0.3:
        text = text.upper()
    elif roll < 0.35:
        text = " ".join([text] * rng.randint(10, 40))  # far past any context length
    return text


def corpus(n: int = 2400, seed: int = 14) -> list[str]:
    """n distinct strings: the hand-written ones, then random mixtures of every pool."""
    rng = random.Random(seed)
    seen = dict.fromkeys(HAND_WRITTEN)
    for pool in POOLS + (SPACES, CONTROL):
        for item in pool:
            seen.setdefault(item)
            seen.setdefault(f"a photo of {item} here")
    while len(seen) < n:
        seen.setdefault(_phrase(rng))
    return list(seen)[:n]
