import pytest

from s2v_core.errors import InputFileError
from s2v_core.io.metadata import meta_for, read_metadata_csv


def test_project_metadata(tmp_path):
    p = tmp_path / "metadata.csv"
    p.write_text("night,subject,site,age,sex,ahi\nn1,s1,A,54,M,3.2\nn2,s1,A,54.5,F,\nn3,s2,B,,x,1\n")
    frame, used = read_metadata_csv(p)
    assert used == {"night": "night", "subject": "subject", "site": "site", "age": "age", "sex": "sex"}
    m = meta_for(frame, "n1")
    assert (m.subject, m.site, m.age, m.sex) == ("s1", "A", 54.0, "M")
    assert meta_for(frame, "n2").sex == "F"
    m3 = meta_for(frame, "n3")
    assert m3.age is None and m3.sex is None
    assert meta_for(frame, "missing").age is None


def test_nsrr_style_columns(tmp_path):
    p = tmp_path / "shhs1-dataset.csv"
    p.write_text("nsrrid,age_s1,gender,clinic\n200001,67,1,3\n200002,71,2,1\n")
    frame, used = read_metadata_csv(p)
    assert used["night"] == "nsrrid" and used["age"] == "age_s1" and used["sex"] == "gender"
    assert meta_for(frame, "200001").sex == "M" and meta_for(frame, "200002").sex == "F"
    assert meta_for(frame, "200002").site == "1" and meta_for(frame, "200002").subject == "200002"


def test_semicolon_delimited(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("night;age;sex\na;30;female\n")
    frame, _ = read_metadata_csv(p)
    assert meta_for(frame, "a").sex == "F" and meta_for(frame, "a").age == 30


def test_errors(tmp_path):
    p = tmp_path / "noid.csv"
    p.write_text("age,sex\n3,M\n")
    with pytest.raises(InputFileError, match="noid.csv: metadata CSV has no id column"):
        read_metadata_csv(p)
    q = tmp_path / "dup.csv"
    q.write_text("night,age\na,3\na,4\n")
    with pytest.raises(InputFileError, match="repeats night ids: a"):
        read_metadata_csv(q)
    e = tmp_path / "empty.csv"
    e.write_text("")
    with pytest.raises(InputFileError, match="empty.csv"):
        read_metadata_csv(e)
