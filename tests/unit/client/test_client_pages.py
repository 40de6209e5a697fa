"""iter_jobs follows `Link: <…>; rel="next"` across pages; the header is parsed per RFC 8288."""

from __future__ import annotations

import pytest

from workstream.client import ApiError
from workstream.client.links import next_link, parse_links


def test_iter_jobs_follows_links_across_three_pages(client, stub) -> None:
    ids = [stub.add_job("echo")["id"] for _ in range(7)]
    stub.add_job("sleep")
    assert [job["id"] for job in client.iter_jobs(type="echo", page_size=3)] == ids
    pages = stub.sent("GET", "/jobs")
    assert len(pages) == 3
    assert pages[0].target == "/jobs?type=echo&limit=3"
    assert [r.query.get("cursor") for r in pages] == [None, ["3"], ["6"]]
    assert all(r.query["type"] == ["echo"] and r.query["limit"] == ["3"] for r in pages)


def test_iter_jobs_single_page_and_empty(client, stub) -> None:
    assert list(client.iter_jobs()) == []
    stub.add_job()
    assert len(list(client.iter_jobs(page_size=5))) == 1
    assert len(stub.requests) == 2


def test_iter_jobs_is_lazy(client, stub) -> None:
    for _ in range(4):
        stub.add_job()
    jobs = client.iter_jobs(page_size=2)
    assert stub.requests == []
    next(jobs)
    next(jobs)
    assert len(stub.requests) == 1
    next(jobs)
    assert len(stub.requests) == 2


def test_iter_jobs_with_an_absolute_link_among_others(client, stub) -> None:
    link = (
        '<https://docs.example/jobs?a=1,2;b>; rel="help"; title="pages; next, prev", '
        f'<{stub.url}/jobs?cursor=abc%3D&limit=1>; rel="last next"'
    )
    stub.script("GET", "/jobs", 200, [{"id": "1"}], headers={"Link": link})
    stub.script("GET", "/jobs", 200, [{"id": "2"}])
    assert [job["id"] for job in client.iter_jobs(page_size=1)] == ["1", "2"]
    assert stub.requests[1].target == "/jobs?cursor=abc%3D&limit=1"


def test_iter_jobs_refuses_a_link_to_another_server(client, stub) -> None:
    stub.script("GET", "/jobs", 200, [], headers={"Link": '<http://evil.test/jobs>; rel="next"'})
    with pytest.raises(ApiError, match="another server") as caught:
        list(client.iter_jobs())
    assert caught.value.code == "invalid_response"
    assert len(stub.requests) == 1


def test_iter_jobs_stops_on_a_link_loop(client, stub) -> None:
    loop = {"Link": '</jobs?cursor=x>; rel="next"'}
    for _ in range(3):
        stub.script("GET", "/jobs", 200, [{"id": "same"}], headers=loop)
    with pytest.raises(ApiError, match="loop"):
        list(client.iter_jobs())
    assert len(stub.requests) == 2


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (['</jobs?cursor=2>; rel="next"'], "/jobs?cursor=2"),
        (["</jobs?cursor=2>;rel=next"], "/jobs?cursor=2"),
        (['</p>; rel="prev", </n>; rel="next"'], "/n"),
        (['</p>; rel="prev"', '</n>; REL="Next"'], "/n"),
        (['</a,b;c>; title="x, rel=next"; rel="next"'], "/a,b;c"),
        (['</a>; title="say \\"next\\""; rel="prev", </b>; rel="next"'], "/b"),
        (['</first>; rel="next"; rel="prev"'], "/first"),
        (['</only-prev>; rel="prev"'], None),
        (['</no-rel>; title="next"'], None),
        (["garbage"], None),
        ([], None),
    ],
)
def test_next_link(values, expected) -> None:
    assert next_link(values) == expected


def test_parse_links_keeps_params() -> None:
    links = parse_links(["</a>; rel=\"next\"; title*=UTF-8''caf%C3%A9, </b>; rel=prev"])
    assert links == [("/a", {"rel": "next", "title*": "UTF-8''caf%C3%A9"}), ("/b", {"rel": "prev"})]
