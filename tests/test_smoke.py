from tests.conftest import AppClient, count, fixture_bytes


async def test_lead_replied_stored_once(client: AppClient, workspace, settings) -> None:
    url = client.url("emailbison", workspace)
    first = await client.http.post(url, content=fixture_bytes("emailbison/lead_replied.json"))
    second = await client.http.post(url, content=fixture_bytes("emailbison/lead_replied.json"))
    assert first.json()["deduped"] is False
    assert second.json() == {**first.json(), "deduped": True}
    assert await count(settings.database_url, "messages") == 1
