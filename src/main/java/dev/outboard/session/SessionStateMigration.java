package dev.outboard.session;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.pekko.serialization.jackson.JacksonMigration;

/**
 * Snapshots written before the state had its own file name their class {@code
 * dev.outboard.session.SessionEntity$State}; they load as {@link SessionState} unchanged (bound to
 * the old name in serialization.conf).
 */
public final class SessionStateMigration extends JacksonMigration {
  static final String OLD_NAME = "dev.outboard.session.SessionEntity$State";

  @Override
  public int currentVersion() {
    return 2;
  }

  @Override
  public String transformClassName(int fromVersion, String className) {
    return OLD_NAME.equals(className) ? SessionState.class.getName() : className;
  }

  @Override
  public JsonNode transform(int fromVersion, JsonNode json) {
    return json;
  }
}
