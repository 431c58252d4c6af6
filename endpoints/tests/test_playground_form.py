"""The playground's form: inputs from the schema, read back into the body serving takes."""

import json

from endpoints.playground_form import PlaygroundForm

SCHEMA = [
    {"name": "age", "type": "integer"},
    {"name": "income", "type": "number", "nullable": True},
    {"name": "sex", "type": "string", "categories": ["Female", "Male"], "other_values": False},
    {
        "name": "city",
        "type": "string",
        "categories": ["Lyon", "Paris"],
        "other_values": True,
        "nullable": True,
    },
    {"name": "member", "type": "boolean"},
]
EXAMPLES = {
    "rows": [{"age": 39, "income": None, "sex": "Male", "city": "Paris", "member": True}],
    "by_feature": {"age": "SimpleImputer's median value"},
}


def test_each_feature_gets_the_input_its_type_needs_filled_with_the_example():
    form = PlaygroundForm(SCHEMA, examples=EXAMPLES)

    widgets = {each.name: (each.widget, each.value) for each in form.inputs}
    assert widgets == {
        "age": ("number", "39"),
        "income": ("number", ""),
        "sex": ("select", "Male"),
        "city": ("text", "Paris"),  # takes other values: text with the known ones offered
        "member": ("boolean", "true"),
    }
    assert form.inputs[0].step == "1" and form.inputs[1].step == "any"
    assert form.inputs[2].choices == [("Female", "Female"), ("Male", "Male")]
    assert form.inputs[3].choices[0] == ("", "(missing)")
    assert form.inputs[0].hint == "SimpleImputer's median value"
    assert json.loads(form.rows_text) == EXAMPLES["rows"]


def test_a_row_is_sent_typed_empty_nullable_as_null_and_empty_others_left_out():
    data = {
        "shape": "row",
        "feature-0": "41",
        "feature-1": "",
        "feature-2": "",
        "feature-3": "Nice",
        "feature-4": "false",
    }

    body = PlaygroundForm(SCHEMA, data=data).body()

    assert body == {"age": 41, "income": None, "city": "Nice", "member": False}


def test_what_the_form_cannot_type_is_sent_as_written_for_serving_to_name():
    data = {
        "shape": "row",
        "feature-0": "4.5",
        "feature-1": "lots",
        "feature-2": "Male",
        "feature-3": "",
        "feature-4": "yes",
    }

    body = PlaygroundForm(SCHEMA, data=data).body()

    assert body == {"age": 4.5, "income": "lots", "sex": "Male", "city": None, "member": "yes"}


def test_a_batch_is_sent_as_inputs_and_a_wrong_one_is_named_before_sending():
    rows = [{"age": 1, "sex": "Male", "member": True}]
    good = PlaygroundForm(SCHEMA, data={"shape": "batch", "rows": json.dumps(rows), "return": "both"})
    bad = PlaygroundForm(SCHEMA, data={"shape": "batch", "rows": '{"age": 1}'})
    many = PlaygroundForm(SCHEMA, data={"shape": "batch", "rows": json.dumps(rows * 101)})

    assert good.body() == {"inputs": rows} and good.return_mode == "both"
    assert bad.body() is None and bad.batch_errors == [
        "Give a JSON list of rows: objects of named features, or lists of values."
    ]
    assert many.body() is None and many.batch_errors == ["The playground sends at most 100 rows."]


def test_a_422s_fields_go_next_to_their_inputs_and_the_rest_above():
    form = PlaygroundForm(SCHEMA, data={"shape": "row", "feature-0": "x"})

    form.attach(
        {"age": "expected an integer", "return": "expected one of label", "colour": "unexpected field"}
    )

    assert form.inputs[0].errors == ["expected an integer"]
    assert form.return_error == "expected one of label"
    assert form.errors == ["colour: unexpected field"]


def test_a_regressor_offers_no_probabilities():
    assert [value for value, _ in PlaygroundForm(SCHEMA, classifier=False).return_choices] == ["", "label"]
    assert len(PlaygroundForm(SCHEMA).return_choices) == 4
