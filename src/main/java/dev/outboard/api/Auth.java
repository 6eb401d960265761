package dev.outboard.api;

import java.util.Optional;
import java.util.function.Function;
import java.util.function.Supplier;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.Route;

/** Authentication directives: org API keys for the API, the admin token for {@code /v1/admin}. */
public final class Auth extends AllDirectives {
  private final ApiKeys keys;
  private final String adminToken;

  public Auth(ApiKeys keys, String adminToken) {
    this.keys = keys;
    this.adminToken = adminToken;
  }

  /** Runs {@code inner} with the caller's org; 401 without a valid key. */
  public Route org(Function<String, Route> inner) {
    return optionalHeaderValueByName(
        "Authorization",
        header -> {
          Optional<String> key = bearer(header);
          if (key.isEmpty())
            throw ApiError.unauthorized("missing API key: send Authorization: Bearer <key>");
          return onSuccess(
              keys.authenticate(key.get()),
              org -> {
                if (org.isEmpty()) throw ApiError.unauthorized("invalid API key");
                return inner.apply(org.get());
              });
        });
  }

  /** Runs {@code inner} only for the admin token; 401 otherwise, or when no token is configured. */
  public Route admin(Supplier<Route> inner) {
    return optionalHeaderValueByName(
        "Authorization",
        header -> {
          if (adminToken.isEmpty())
            throw ApiError.unauthorized("the admin API is disabled: set OUTBOARD_ADMIN_TOKEN");
          Optional<String> token = bearer(header);
          if (token.isEmpty() || !ApiKeys.secretEquals(token.get(), adminToken)) {
            throw ApiError.unauthorized("missing or invalid admin token");
          }
          return inner.get();
        });
  }

  private static Optional<String> bearer(Optional<String> header) {
    return header
        .filter(h -> h.regionMatches(true, 0, "Bearer ", 0, 7))
        .map(h -> h.substring(7).trim())
        .filter(s -> !s.isEmpty());
  }
}
