// The REST API, read with the viewer token (Authorization: Bearer), never with the token in a URL.
export class Unauthorized extends Error {}

export class Api {
  constructor(token) {
    this.token = token;
  }

  headers() {
    return this.token ? {Authorization: `Bearer ${this.token}`} : {};
  }

  async get(path) {
    const response = await fetch(path, {headers: this.headers(), cache: "no-store"});
    if (response.status === 401) throw new Unauthorized("the viewer token was refused");
    if (!response.ok) {
      let detail = "";
      try { detail = (await response.json()).detail; } catch (error) { /* not JSON */ }
      if (Array.isArray(detail)) detail = detail.map((problem) => problem.msg).join("; ");  // a 422's problems
      throw new Error(`HTTP ${response.status}${detail ? `: ${detail}` : ""}`);
    }
    return response;
  }

  async runs(limit = 100) {
    return (await this.get(`/api/runs?limit=${limit}`)).json();
  }

  async run(runId) {
    return (await this.get(`/api/runs/${encodeURIComponent(runId)}`)).json();
  }

  async lines(runId, afterSeq, limit) {
    return (await this.get(`/api/runs/${encodeURIComponent(runId)}/logs?after_seq=${afterSeq}&limit=${limit}`)).json();
  }

  // the whole run as text, from the streamed download endpoint, saved through an object URL
  async download(runId) {
    const blob = await (await this.get(`/api/runs/${encodeURIComponent(runId)}/logs.txt`)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `livelog-${runId}.log`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  }
}
