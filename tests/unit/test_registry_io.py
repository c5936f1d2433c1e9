"""Registry files: YAML and CSV round trips, and a line-numbered report of every bad row."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway import registry_io
from gateway.registry import Device, Location, School, SchoolType
from gateway.registry_io import RegistryImportError, dump_csv, dump_yaml, load, write_csv

SCHOOLS = [
    School(id="s0001", name="城关区第一中学", prefecture="p-01", county="c-01",
           type=SchoolType.SECONDARY, has_dormitory=True),
    # Texts a YAML 1.1 reader would take for a number, boolean or null; CSV quoting.
    School(id="0012", name="no", prefecture="p-01", county="c-02", type=SchoolType.KINDERGARTEN,
           has_canteen=False, retention_days=90),
    School(id="s0003", name='Grove "Oak", 2\nnd campus', prefecture="p-01", county="null",
           type=SchoolType.PRIMARY),
]  # fmt: skip
DEVICES = [
    Device(school="s0001", kind="button", id="b1", location=Location.GATEHOUSE,
           install_date=date(2024, 3, 1), linkage="police", name="门卫室一键报警"),
    Device(school="s0001", kind="gate", id="g1", power="battery", zone="north"),
    Device(school="0012", kind="camera", id="1.5", name="true"),
]  # fmt: skip
SCHOOLS_CSV = "id,name,prefecture,county,type\ns1,One,p-01,c-01,primary\ns2,Two,p-01,c-01,primary\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(paths: list[Path], known: set[str] | None = None) -> list[str]:
    """The report of a refused import, one line per problem, file names relative."""
    with pytest.raises(RegistryImportError) as info:
        load(paths, known or set())
    folder = str(paths[0].parent) + "/"
    return str(info.value).replace(folder, "").splitlines()


# --- round trips -------------------------------------------------------------------------------


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, "registry.yaml", dump_yaml(SCHOOLS, DEVICES))
    assert load([path]) == (SCHOOLS, DEVICES)


def test_yaml_is_one_line_per_record_and_quotes_what_other_readers_would_convert() -> None:
    text = dump_yaml(SCHOOLS[:2], DEVICES[:1])
    assert text.splitlines()[:3] == [
        "schools:",
        "- {id: s0001, name: 城关区第一中学, prefecture: p-01, county: c-01, type: secondary, "
        "has_dormitory: true, has_canteen: true, retention_days: 30}",
        "- {id: '0012', name: 'no', prefecture: p-01, county: c-02, type: kindergarten, "
        "has_dormitory: false, has_canteen: false, retention_days: 90}",
    ]
    assert "install_date: 2024-03-01, linkage: police" in text  # None fields are left out


def test_csv_round_trip(tmp_path: Path) -> None:
    paths = write_csv(tmp_path, SCHOOLS, DEVICES)
    assert [p.name for p in paths] == ["schools.csv", "devices.csv"]
    assert load(paths) == (SCHOOLS, DEVICES)
    assert load([tmp_path]) == (SCHOOLS, DEVICES)  # a folder means its files


def test_csv_columns_are_the_model_fields() -> None:
    header = dump_csv(DEVICES).splitlines()[0]
    assert header == "school,kind,id,zone,location,power,install_date,linkage,name"
    assert dump_csv([], School) == "id,name,prefecture,county,type,has_dormitory,has_canteen," \
        "retention_days\n"  # fmt: skip
    assert dump_csv(DEVICES).splitlines()[2] == "s0001,gate,g1,north,other,battery,,,"


def test_any_mix_of_formats(tmp_path: Path) -> None:
    schools = write(tmp_path, "schools.csv", dump_csv(SCHOOLS))
    devices = write(tmp_path, "devices.yaml", dump_yaml([], DEVICES))
    assert load([schools, devices]) == (SCHOOLS, DEVICES)


def test_handwritten_yaml_values_are_text_converted_by_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yml", """\
schools:
  - id: 0012            # stays "0012", not the octal number 10
    name: yes
    prefecture: p-01
    county: c-01
    type: primary
    has_dormitory: yes
    retention_days: 60
devices:
  - {school: 0012, kind: gate, id: 7, install_date: 2024-03-01, name: ~}
""")  # fmt: skip
    (school,), (device,) = load([path])
    assert (school.id, school.name, school.has_dormitory, school.retention_days) == (
        "0012", "yes", True, 60)  # fmt: skip
    assert (device.key, device.install_date, device.name) == ("0012/gate/7", date(2024, 3, 1), None)


def test_csv_with_bom_crlf_blank_lines_and_spaces(tmp_path: Path) -> None:
    text = "\ufeffid, name ,prefecture,county,type\r\n\r\n s1 , One ,p-01,c-01,primary\r\n"
    (school,), _ = load([write(tmp_path, "schools.csv", text)])
    assert (school.id, school.name) == ("s1", "One")


def test_yaml_with_only_schools_or_empty(tmp_path: Path) -> None:
    assert load([write(tmp_path, "a.yaml", "schools: []\n")]) == ([], [])
    assert load([write(tmp_path, "b.yaml", "")]) == ([], [])


# --- every bad row, with its line --------------------------------------------------------------


def test_every_bad_row_is_reported_with_file_line_and_column(tmp_path: Path) -> None:
    schools = write(tmp_path, "schools.csv", SCHOOLS_CSV + "s3,,p-01,c-01,college\n")
    devices = write(tmp_path, "devices.csv", """\
school,kind,id,install_date
s1,button,b1,2024-03-01
s1,camra,c1,
s1,camera,c2,2024-13-01
s1,gate,g 1,
s2,gate,g1,yesterday
""")  # fmt: skip
    assert problems([schools, devices]) == [
        "schools.csv:4: name: required, missing",
        "schools.csv:4: type: Input should be 'kindergarten', 'primary', 'secondary', "
        "'high_school' or 'university' (got 'college')",
        "devices.csv:3: kind: Input should be 'button', 'camera' or 'gate' (got 'camra')",
        "devices.csv:4: install_date: Input should be a valid date or datetime, month value is "
        "outside expected range of 1-12 (got '2024-13-01')",
        "devices.csv:5: id: String should match pattern '^[A-Za-z0-9_.-]{1,64}$' (got 'g 1')",
        "devices.csv:6: install_date: Input should be a valid date or datetime, input is too "
        "short (got 'yesterday')",
    ]


def test_unknown_school(tmp_path: Path) -> None:
    schools = write(tmp_path, "schools.csv", SCHOOLS_CSV)
    devices = write(tmp_path, "devices.csv", "school,kind,id\ns1,gate,g1\ns9,gate,g1\n")
    assert problems([schools, devices]) == [
        "devices.csv:3: school: unknown school 's9': not in the files"
    ]


def test_school_of_the_stored_registry_is_known_when_merging(tmp_path: Path) -> None:
    devices = write(tmp_path, "devices.csv", "school,kind,id\ns1,gate,g1\ns9,gate,g1\n")
    assert problems([devices], known={"s1"}) == [
        "devices.csv:3: school: unknown school 's9': not in the files nor in the registry"
    ]
    _, loaded = load([write(tmp_path, "ok.csv", "school,kind,id\ns1,gate,g1\n")], {"s1"})
    assert [d.key for d in loaded] == ["s1/gate/g1"]


def test_a_bad_school_row_does_not_also_report_its_devices(tmp_path: Path) -> None:
    schools = write(tmp_path, "schools.csv", "id,name,prefecture,county,type\ns1,,p,c,primary\n")
    devices = write(tmp_path, "devices.csv", "school,kind,id\ns1,gate,g1\n")
    assert problems([schools, devices]) == ["schools.csv:2: name: required, missing"]


def test_duplicates_name_the_first_occurrence(tmp_path: Path) -> None:
    schools = write(tmp_path, "schools.csv", SCHOOLS_CSV + "s1,Again,p-01,c-01,primary\n")
    devices = write(tmp_path, "devices.yaml", """\
devices:
  - {school: s1, kind: gate, id: g1}
  - {school: s1, kind: button, id: g1}
  - {school: s1, kind: gate, id: g1}
""")  # fmt: skip
    assert problems([schools, devices]) == [
        "schools.csv:4: duplicate school id 's1' (first at schools.csv:2)",
        "devices.yaml:4: duplicate device s1/gate/g1 (first at devices.yaml:2)",
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("school,kind,id,colour", "devices.csv:1: unknown column 'colour' in a device file "
         "(columns: school, kind, id, zone, location, power, install_date, linkage, name)"),
        ("school,kind", "devices.csv:1: missing required column 'id' in a device file"),
        ("school,kind,id,id", "devices.csv:1: column 'id' appears twice"),
        ("school,id", "devices.csv:1: header is neither a schools file (columns name, county, "
         "...) nor a devices file (columns kind, ...)"),
    ],
)  # fmt: skip
def test_bad_header(tmp_path: Path, header: str, expected: str) -> None:
    path = write(tmp_path, "devices.csv", header + "\ns1,gate,g1\n")
    assert problems([path]) == [expected]


def test_row_with_wrong_number_of_values_and_multiline_cells(tmp_path: Path) -> None:
    text = 'id,name,prefecture,county,type\ns1,"two\nlines",p,c,primary\ns2,x,p,c\n' \
        "s3,x,p,c,primary,1\n"  # fmt: skip
    path = write(tmp_path, "schools.csv", text)
    assert problems([path]) == [
        "schools.csv:4: 4 values, the header has 5 columns",
        "schools.csv:5: 6 values, the header has 5 columns",
    ]


def test_yaml_problems_point_at_the_field_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """\
schools:
  - id: s1
    name: One
    prefecture: p-01
    county: c-01
    type: primry
    colour: red
  - just a text
devices: {school: s1}
extra: 1
""")  # fmt: skip
    assert problems([path]) == [
        "r.yaml:6: type: Input should be 'kindergarten', 'primary', 'secondary', 'high_school' "
        "or 'university' (got 'primry')",
        "r.yaml:7: colour: unknown field",
        "r.yaml:8: schools: expected a mapping of fields, got 'just a text'",
        "r.yaml:9: devices: expected a list",
        "r.yaml:10: unknown key 'extra': schools or devices",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("schools: [\n  {id: s1\n", "r.yaml:3: not valid YAML: did not find expected ',' or '}'"),
        ("schools: []\n---\ndevices: []\n", "r.yaml:3: not valid YAML: a second document; one "
         "is expected"),
        ("{[1]: 2}\n", "r.yaml:1: not valid YAML: only text keys are supported"),
        ("- 1\n", "r.yaml:1: expected a mapping with the lists schools: and devices:"),
        ("schools: *nowhere\n", "r.yaml:1: not valid YAML: unknown alias *nowhere"),
    ],
)  # fmt: skip
def test_yaml_that_is_not_a_registry(tmp_path: Path, text: str, expected: str) -> None:
    assert problems([write(tmp_path, "r.yaml", text)]) == [expected]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "latin1.csv").write_bytes(
        b"id,name,prefecture,county,type\ns1,Caf\xe9,p,c,primary\n"
    )
    paths = [tmp_path / "missing.csv", write(tmp_path, "notes.txt", "hi"), tmp_path / "latin1.csv",
             write(tmp_path, "empty.csv", "")]  # fmt: skip
    assert problems(paths) == [
        "missing.csv: no such file",
        "notes.txt: unknown file type: use .yaml, .yml or .csv",
        "latin1.csv:2: not UTF-8 text (invalid continuation byte)",
        "empty.csv: empty file: no header",
    ]


def test_all_or_nothing_and_the_error_lists_problems_as_tuples(tmp_path: Path) -> None:
    rows = "".join(f"s{n},School {n},p-01,c-01,{'primary' if n != 500 else 'x'}\n"
                   for n in range(1, 1001))  # fmt: skip
    path = write(tmp_path, "schools.csv", "id,name,prefecture,county,type\n" + rows)
    with pytest.raises(RegistryImportError) as info:
        load([path])
    ((file, line, message),) = info.value.problems
    assert (file, line) == (str(path), 501) and message.startswith("type: Input should be")
    assert str(info.value) == f"{path}:501: {message}"


def test_progress_is_reported_for_big_files(tmp_path: Path) -> None:
    rows = "".join(f"s{n},School {n},p-01,c-01,primary\n" for n in range(45_000))
    path = write(tmp_path, "schools.csv", "id,name,prefecture,county,type\n" + rows)
    lines: list[str] = []
    schools, _ = load([path], progress=lines.append)
    assert len(schools) == 45_000
    assert lines == [f"read {path}: 45000 rows", "validated 20000 of 45000 rows",
                     "validated 40000 of 45000 rows"]  # fmt: skip
    assert registry_io.PROGRESS_EVERY == 20_000
