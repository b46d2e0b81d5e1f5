/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */

/** The sign-in form: the key is typed or pasted, sent once, and never shown again. */
export const SignInPage = () => (
  <>
    <p>Sign in with the API key you were given (coordinators, auditors) or the admin token.</p>
    <form method="post" action="/console/sign-in">
      <label for="apiKey">API key</label>
      <p class="hint" id="apiKey-hint">
        An API key starts with <code>plk_</code>; the admin token <code>pnpm start</code> generates, with{" "}
        <code>pla_</code>. It is kept on the server for this session only and never shown again.
      </p>
      <input
        type="password"
        id="apiKey"
        name="apiKey"
        autocomplete="off"
        spellcheck={false}
        required
        maxlength={1024}
        aria-describedby="apiKey-hint"
      />
      <div class="actions">
        <button type="submit">Sign in</button>
      </div>
    </form>
  </>
);
