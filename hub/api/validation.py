"""connexion 3 builds a new JSON-schema validator for every request body
(connexion/validators/json.py), which more than halved the throughput of a validated POST.
The schema object of an operation never changes, so build its validator once."""
from __future__ import annotations

from connexion.datastructures import MediaTypeDict
from connexion.json_schema import Draft4RequestValidator
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator
from jsonschema import Draft4Validator

_compiled: dict[int, tuple[dict, Draft4RequestValidator]] = {}


class CachedJSONRequestBodyValidator(JSONRequestBodyValidator):
    @property
    def _validator(self):
        hit = _compiled.get(id(self._schema))
        if hit is None or hit[0] is not self._schema:
            hit = (
                self._schema,
                Draft4RequestValidator(self._schema, format_checker=Draft4Validator.FORMAT_CHECKER),
            )
            _compiled[id(self._schema)] = hit
        return hit[1]


def validator_map() -> dict:
    # Keep it a MediaTypeDict: a plain dict does not match "*/*json" and skips validation.
    body = MediaTypeDict(VALIDATOR_MAP["body"])
    for media_type, cls in body.items():
        if cls is JSONRequestBodyValidator:
            body[media_type] = CachedJSONRequestBodyValidator
    return {**VALIDATOR_MAP, "body": body}
