"""Region and instance names as people read them, from the many styles providers use.

Providers name regions their own way ("us-east-1", "eastus2", "CA-MTL-1", "Florida, US, NA",
"FRA2", "default"). `region_label` turns each into one style: the place first, then its zone
number ("US East 1", "Montreal 1, Canada", "Florida, US"); pages show it with the provider's raw
name on hover, so nothing is lost. `instance_label` keeps a provider's own instance name
("g5.2xlarge", "gpu_8x_h100_sxm5") and hides internal marketplace ids, which mean nothing to a person.
"""

from __future__ import annotations

import re

NOT_STATED = "Region not stated"
_UNSTATED = {"", "default", "any", "any region", "global", "all"}

# Area codes and words that name a continent, country or cloud geography.
AREAS = {
    "us": "US", "usa": "US", "na": "North America", "ca": "Canada", "canada": "Canada",
    "eu": "Europe", "eur": "Europe", "europe": "Europe", "uk": "UK", "gb": "UK",
    "ap": "Asia Pacific", "asia": "Asia", "me": "Middle East", "af": "Africa", "sa": "South America",
    "southamerica": "South America", "au": "Australia", "australia": "Australia", "jp": "Japan",
    "in": "India", "india": "India", "br": "Brazil", "de": "Germany", "fr": "France", "nl": "Netherlands",
    "se": "Sweden", "no": "Norway", "norway": "Norway", "fi": "Finland", "fin": "Finland", "finland": "Finland",
    "is": "Iceland", "ice": "Iceland", "cz": "Czechia", "ro": "Romania", "it": "Italy", "es": "Spain",
    "pt": "Portugal", "gr": "Greece", "pl": "Poland", "bg": "Bulgaria", "dk": "Denmark", "ee": "Estonia",
    "hk": "Hong Kong", "cn": "China", "kr": "South Korea", "sg": "Singapore", "tw": "Taiwan", "ru": "Russia",
    "ch": "Switzerland", "at": "Austria", "be": "Belgium", "ie": "Ireland", "il": "Israel", "th": "Thailand",
    "nz": "New Zealand", "mx": "Mexico", "ar": "Argentina", "za": "South Africa", "ua": "Ukraine",
    "hu": "Hungary", "lt": "Lithuania", "lv": "Latvia", "si": "Slovenia", "sk": "Slovakia", "hr": "Croatia",
    "rs": "Serbia", "tr": "Turkey", "vn": "Vietnam", "id": "Indonesia", "my": "Malaysia", "ph": "Philippines",
}
# Country names written out ("tokyo-japan-1"), read as areas too.
AREAS.update({name.lower().replace(" ", ""): name for name in set(AREAS.values()) if name not in ("US", "UK")})
CONTINENT_SUFFIXES = {"na", "eu", "as", "oc", "sa", "af", "an"}
US_STATES = {"ca": "California", "tx": "Texas", "ga": "Georgia", "or": "Oregon", "wa": "Washington", "ny": "New York",
             "il": "Illinois", "ks": "Kansas", "nc": "North Carolina", "va": "Virginia", "nj": "New Jersey",
             "az": "Arizona", "co": "Colorado", "ut": "Utah", "oh": "Ohio", "fl": "Florida", "de": "Delaware"}
DIRECTIONS = ["northeast", "northwest", "southeast", "southwest", "northcentral", "southcentral", "westcentral",
              "eastcentral", "midwest", "central", "north", "south", "east", "west"]
_DIRECTION_WORDS = {"northcentral": "North Central", "southcentral": "South Central", "westcentral": "West Central",
                    "eastcentral": "East Central"}
# City codes (airport-style) and run-together city names providers use.
CITIES = {
    "par": "Paris", "mtl": "Montreal", "tor": "Toronto", "syd": "Sydney", "sao": "São Paulo", "osa": "Osaka",
    "tok": "Tokyo", "fra": "Frankfurt", "ams": "Amsterdam", "lon": "London", "nyc": "New York", "sfo": "San Francisco",
    "sea": "Seattle", "lax": "Los Angeles", "dal": "Dallas", "atl": "Atlanta", "chi": "Chicago", "sjc": "San Jose",
    "newyork": "New York", "kansascity": "Kansas City", "desmoines": "Des Moines", "saltlakecity": "Salt Lake City",
    "abudhabi": "Abu Dhabi", "losangeles": "Los Angeles", "sanjose": "San Jose", "lasvegas": "Las Vegas",
}
# Whole names no rule reads right.
EXACT = {"it-fr2": "Frosinone 2, Italy"}

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_NUMBERED = re.compile(r"^([a-z]+?)(\d+)([a-z]?)$")
_AZURE_AREAS = ("us", "europe", "asia", "india", "japan", "canada", "uk", "brazil", "australia", "france", "germany", "norway")


def _direction(word: str) -> str:
    return _DIRECTION_WORDS.get(word, word.capitalize())


def _azure_style(raw: str) -> str | None:
    """`eastus2`, `westeurope`, `southcentralus`: a direction run into an area, then a number."""
    match = re.fullmatch(r"([a-z]+?)(" + "|".join(_AZURE_AREAS) + r")(\d*)", raw)
    if not match or match.group(1) not in DIRECTIONS:
        return None
    direction, area, number = match.groups()
    return " ".join(p for p in (AREAS.get(area, area.capitalize()), _direction(direction), number) if p)


def _listed(raw: str) -> str:
    """`Florida, US, NA` (place, country code, continent code): the place and the country."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > 1 and parts[-1].lower() in CONTINENT_SUFFIXES:
        parts = parts[:-1]
    if len(parts) == 1:
        return AREAS.get(parts[0].lower(), parts[0])
    place, country = parts[0], parts[1]
    country = country if country in ("US", "UK") else AREAS.get(country.lower(), country)
    return place if place.lower().removeprefix("the ") == country.lower() else f"{place}, {country}"


def region_label(raw: str) -> str:
    """One readable style for a provider's region name (see the module's docstring)."""
    text = (raw or "").strip()
    key = text.lower()
    if key in _UNSTATED or _UUID.match(text):
        return NOT_STATED
    if key in EXACT:
        return EXACT[key]
    if "," in text:
        return _listed(text)
    if " " in text and not re.fullmatch(r"[A-Za-z]+ \d+", text):
        return text  # already written for people, e.g. "East Coast (NY2)"
    if azure := _azure_style(key):
        return azure

    areas: list[str] = []
    places: list[str] = []
    words: list[str] = []
    number = ""
    for token in re.split(r"[-_ ]+", key):
        match = _NUMBERED.match(token)
        if match:
            token, digits, zone = match.groups()
            number = str(int(digits)) + (f" (zone {zone})" if zone else "")
        elif token.isdigit():
            number = str(int(token))
            continue
        elif len(token) == 1 and number:
            number += f" (zone {token})"
            continue
        if not token:
            continue
        if areas == ["US"] and token in US_STATES and not words:
            places.append(US_STATES[token])
        elif token in DIRECTIONS:
            words.append(_direction(token))
        elif token in CITIES:
            places.append(CITIES[token])
        elif token in AREAS:
            areas.append(AREAS[token])
        else:
            places.append(token.capitalize() if len(token) > 3 else token.upper())

    if places:
        place = " ".join(places + words + ([number] if number else []))
        return f"{place}, {areas[0]}" if areas else place
    if not areas:
        return text
    # "eu-cz-1": the most specific area names the place.
    area = areas[-1] if len(areas) > 1 else areas[0]
    return " ".join(p for p in (area, *words, number) if p)


_MARKETPLACE_ID = re.compile(r"[0-9a-f]{12,}|__|^\d+x\d+v\d+g|^\d+x-.+-\d+-\d+$", re.I)


def instance_label(name: str) -> str:
    """The provider's instance name when it is one a person can read, else "" (specs say it better)."""
    if not name or len(name) > 28 or _MARKETPLACE_ID.search(name):
        return ""
    return name
